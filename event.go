// Package auditlogin holds the shared vocabulary of the agent — Event, Line,
// Position, FileID and the small Parser, Output, Checkpoint and DeadLetter
// interfaces — and the Pipeline that wires a tailer's lines through a parser to
// every output, advancing file offsets only from acknowledgements.
// It imports only the standard library; leaf packages import it, never each other.
package auditlogin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Event types. Logout is written only by formats that record disconnects.
const (
	TypeSuccess = "successful_login"
	TypeFailed  = "failed_login"
	TypeLogout  = "logout"
)

// Tags set by parsers and by Normalize.
const (
	TagSuspiciousUser = "suspicious_user"
	// TagInvalidIP: the record's ip is no IP address; ip is null and
	// ip_original holds what the server wrote.
	TagInvalidIP = "invalid_ip"
)

// NullString is a string that may be JSON null: the audit_login plugin writes
// the literal "(null)" where the server had no value (a connection that sent
// no credentials), which the agent normalizes to null.
type NullString struct {
	S     string
	Valid bool
}

// Str returns a valid NullString holding s.
func Str(s string) NullString { return NullString{S: s, Valid: true} }

// Null is the null NullString.
var Null = NullString{}

// Event is one normalized login or login attempt. The seed schema's fields keep
// their names and meaning; see docs/schema.md and docs/event.schema.json.
type Event struct {
	Timestamp time.Time  // @timestamp: ts read in the input's zone, in UTC
	TS        string     // ts as the server wrote it (local time, no zone)
	Type      string     // successful_login, failed_login or logout
	MyHost    string     // the server the event came from
	Thread    string     // connection id, as a string
	User      NullString // user name the client sent (attacker-chosen)
	PrivUser  NullString // account granted; "" on a failed login
	Host      NullString // client host name
	IP        NullString // client IP
	ID        string     // deterministic id of the record's fields (see ComputeID)
	// IPOriginal is the ip as the server wrote it, when Normalize changed
	// it (a non-canonical or invalid address); "" otherwise.
	IPOriginal string
	Format     string // source format name
	Tags       []string
	Path       string         // log.file.path
	Offset     int64          // log.offset: byte offset of the record in that file
	Fields     map[string]any // static fields from the config (fields:): string, bool, int64 or float64
	Agent      *AgentInfo     // agent.hostname / agent.version

	// Route, set by a route processor, sends the event to another Kafka
	// topic or Elasticsearch index than the output's. It is not part of
	// the event's JSON (a spool keeps it beside).
	Route Route

	// Encoded is the event's JSON, filled once by the pipeline before the
	// batch goes to the outputs, which share it read-only.
	Encoded []byte

	batch *batch // the pipeline's batch this event was dispatched with
	tk    ticket // its record in the tracker, acknowledged once every output is done with it
	idx   int32  // its place in batch.events (batch.left)

	// pooled: from NewEvent, so the pipeline gives it back to the pool
	// once every output is done with it; buf is its own encoding buffer,
	// kept with it from one use to the next (Encoded is a view of it).
	pooled bool
	buf    []byte
	tags   [2]string // Tags' storage while it holds at most two (no allocation per tagged event)
}

// eventPool holds events that the pipeline has finished with, for NewEvent.
// At one to two million events a second, allocating each event and its
// encoding anew was a third of the agent's allocations, and most of its
// garbage collection.
var eventPool = sync.Pool{New: func() any { return &Event{pooled: true} }}

// maxPooledBuf is the largest encoding buffer kept with a pooled event (a
// record with a huge user name does not pin its buffer for good).
const maxPooledBuf = 4 << 10

// NewEvent returns an empty event for a parser to fill. Once a Pipeline has
// delivered it to every output (or dead-lettered it), the event goes back to
// a pool and NewEvent returns it again: outputs and dead-letter writers must
// not keep an event, or its Encoded bytes, after Write returns. Events made
// otherwise (&Event{}) are never reused.
func NewEvent() *Event {
	e := eventPool.Get().(*Event)
	e.Tags = e.tags[:0:len(e.tags)]
	return e
}

// Clone returns a copy of e that is never reused (for outputs and tests
// that keep events): its Encoded and Tags are its own.
func (e *Event) Clone() *Event {
	c := *e
	c.tags = [2]string{}
	c.Encoded = append([]byte(nil), e.Encoded...)
	c.Tags = append([]string(nil), e.Tags...)
	if e.Tags != nil && c.Tags == nil {
		c.Tags = []string{}
	}
	c.pooled, c.buf, c.batch = false, nil, nil
	return &c
}

// release gives a NewEvent event back to the pool, emptied; other events
// are left alone.
func (e *Event) release() {
	if !e.pooled {
		return
	}
	buf := e.buf[:0]
	if cap(buf) > maxPooledBuf {
		buf = nil
	}
	*e = Event{pooled: true, buf: buf}
	eventPool.Put(e)
}

// Route is an event's destination other than its output's: a Kafka topic,
// an Elasticsearch index (with %{+yyyy.MM.dd} as in outputs.elasticsearch.index).
type Route struct {
	Topic string
	Index string
}

// AgentInfo names the agent that shipped an event.
type AgentInfo struct {
	Hostname string
	Version  string
}

// HasTag reports whether the event carries tag t.
func (e *Event) HasTag(t string) bool {
	for _, x := range e.Tags {
		if x == t {
			return true
		}
	}
	return false
}

// AddTag adds t once.
func (e *Event) AddTag(t string) {
	if !e.HasTag(t) {
		e.Tags = append(e.Tags, t)
	}
}

// FieldNames are the names Field accepts (and "fields.NAME").
var FieldNames = []string{"id", "ts", "type", "myhost", "thread", "user", "priv_user", "host", "ip", "format"}

// Field returns the value of a named event field as a string (null fields
// are ""), for message keys and topic templates. "fields.NAME" reads a static
// field. ok is false for an unknown name.
func (e *Event) Field(name string) (v string, ok bool) {
	switch name {
	case "id":
		return e.ID, true
	case "ts":
		return e.TS, true
	case "type":
		return e.Type, true
	case "myhost":
		return e.MyHost, true
	case "thread":
		return e.Thread, true
	case "user":
		return e.User.S, true
	case "priv_user":
		return e.PrivUser.S, true
	case "host":
		return e.Host.S, true
	case "ip":
		return e.IP.S, true
	case "format":
		return e.Format, true
	}
	if f, found := strings.CutPrefix(name, "fields."); found {
		if v, ok := e.Fields[f]; ok {
			return FieldString(v), true
		}
		return "", true
	}
	return "", false
}

// ValidField reports whether Field accepts name.
func ValidField(name string) bool {
	_, ok := (&Event{}).Field(name)
	return ok
}

// Normalize completes a parsed event before enrichment and encoding: the id
// is computed first, from the record's fields as the server wrote them (so
// ids stay what they were for existing records), then the ip is put in
// canonical form (CanonicalIP): an address Elasticsearch's ip type refuses
// ("10.0.0.03") would otherwise be dead-lettered and missing from Kibana.
// An ip that is no address at all becomes null, tagged invalid_ip; either
// way ip_original keeps what the server wrote.
func (e *Event) Normalize() {
	if e.ID == "" {
		e.ID = e.ComputeID()
	}
	if e.IP.Valid && e.IP.S != "" {
		c, ok := CanonicalIP(e.IP.S)
		switch {
		case !ok:
			e.IPOriginal, e.IP = e.IP.S, Null
			e.AddTag(TagInvalidIP)
		case c != e.IP.S:
			e.IPOriginal, e.IP.S = e.IP.S, c
		}
	}
	if e.Tags == nil {
		e.Tags = []string{}
	}
}

// CanonicalIP returns s as the canonical text of an IP address (RFC 5952
// for IPv6, dotted decimal for IPv4), and false if s is no address. IPv4
// octets with leading zeros are read as decimal ("10.0.0.03" is 10.0.0.3):
// servers print addresses with inet_ntop, so such zeros come from hand-made
// or converted logs, not from octal notation. An IPv6 zone is kept.
func CanonicalIP(s string) (string, bool) {
	if canonicalIPv4(s) {
		return s, true // the common case, without parsing into an address and back
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if c := a.String(); c != s {
			return c, true
		}
		return s, true
	}
	// Dotted quad with leading zeros.
	var oct [4]int
	n, digits := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if digits == 3 {
				return "", false
			}
			oct[n] = oct[n]*10 + int(c-'0')
			digits++
		case c == '.' && digits > 0 && n < 3:
			n, digits = n+1, 0
		default:
			return "", false
		}
	}
	if n != 3 || digits == 0 {
		return "", false
	}
	b := make([]byte, 0, 15)
	for i, o := range oct {
		if o > 255 {
			return "", false
		}
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, int64(o), 10)
	}
	return string(b), true
}

// canonicalIPv4 reports whether s is a dotted-quad IPv4 address already in
// canonical form: four octets of 0-255, no leading zeros.
func canonicalIPv4(s string) bool {
	octets, digits, val := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || val > 255 || (digits > 1 && s[i-digits] == '0') {
				return false
			}
			octets++
			digits, val = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || digits == 3 {
			return false
		}
		val = val*10 + int(c-'0')
		digits++
	}
	return octets == 4
}

// ComputeID returns the event id: the first 16 bytes of a SHA-256 over the
// record's own fields (ts, type, myhost, thread, user, priv_user, host, ip),
// each length-prefixed and marked null or not, as 32 hex digits. It does not
// depend on the file, the offset or the time of reading, so the same record
// has the same id read from the live file or a rotated copy, and Elasticsearch
// and Kafka consumers can deduplicate replays by it. SHA-256 and not a fast
// non-cryptographic hash because the user name is chosen by whoever connects:
// a collision would let one record suppress another under op_type create.
func (e *Event) ComputeID() string {
	var buf [512]byte
	b := buf[:0]
	field := func(valid bool, s string) {
		if valid {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	field(true, e.TS)
	field(true, e.Type)
	field(true, e.MyHost)
	field(true, e.Thread)
	field(e.User.Valid, e.User.S)
	field(e.PrivUser.Valid, e.PrivUser.S)
	field(e.Host.Valid, e.Host.S)
	field(e.IP.Valid, e.IP.S)
	sum := sha256.Sum256(b)
	var id [32]byte
	hex.Encode(id[:], sum[:16])
	return string(id[:]) // one allocation (EncodeToString made two)
}

// AppendJSON appends the event as one JSON object (no newline) to dst.
// Hand-written rather than encoding/json: it runs once per event on the hot
// path, keeps the documented key order, and maps bytes that are not valid
// UTF-8 to U+FFFD (the id is computed from the raw bytes, so two users that
// differ only in such bytes still get different ids).
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"@timestamp":"`...)
	dst = appendTimestamp(dst, e.Timestamp)
	dst = append(dst, '"')
	dst = e.appendSeed(dst, true)
	dst = e.appendTagsLog(dst)
	if e.Agent != nil {
		dst = append(dst, `,"agent":{"hostname":`...)
		dst = AppendJSONString(dst, e.Agent.Hostname)
		dst = append(dst, `,"version":`...)
		dst = AppendJSONString(dst, e.Agent.Version)
		dst = append(dst, '}')
	}
	if len(e.Fields) > 0 {
		var room [8]string
		dst = e.appendFields(dst, `,"fields":{`, sortedKeys(room[:0], e.Fields))
	}
	return append(dst, '}')
}

// appendFields appends the static fields, keys in order, as an object
// opened by head.
func (e *Event) appendFields(dst []byte, head string, keys []string) []byte {
	dst = append(dst, head...)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, k)
		dst = append(dst, ':')
		dst = AppendFieldValue(dst, e.Fields[k])
	}
	return append(dst, '}')
}

// FieldValue returns v as a static field's value: a string, bool, int64 or
// float64 (the types a YAML scalar reads as, integers widened), and false
// for anything else (a list, a map, null).
func FieldValue(v any) (any, bool) {
	switch x := v.(type) {
	case string, bool, int64:
		return x, true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false // JSON has no such number
		}
		return x, true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, false
		}
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return nil, false
		}
		return int64(x), true
	case float32:
		return float64(x), true
	}
	return nil, false
}

// FieldString is a static field's value as text (for message keys, topic
// templates and conditions): true, 42, 1.5, or the string itself.
func FieldString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// AppendFieldValue appends a static field's value with its JSON type.
func AppendFieldValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return AppendJSONString(dst, x)
	case bool:
		return strconv.AppendBool(dst, x)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case float64:
		return strconv.AppendFloat(dst, x, 'g', -1, 64)
	}
	return AppendJSONString(dst, fmt.Sprint(v))
}

// appendSeed appends the seed's record fields, ts to format, each after a
// comma; user and host only with userHost (both leaves them to ECS).
func (e *Event) appendSeed(dst []byte, userHost bool) []byte {
	dst = append(dst, `,"ts":`...)
	dst = AppendJSONString(dst, e.TS)
	dst = append(dst, `,"type":`...)
	dst = AppendJSONString(dst, e.Type)
	dst = append(dst, `,"myhost":`...)
	dst = AppendJSONString(dst, e.MyHost)
	dst = append(dst, `,"thread":`...)
	dst = AppendJSONString(dst, e.Thread)
	if userHost {
		dst = append(dst, `,"user":`...)
		dst = appendNull(dst, e.User)
	}
	dst = append(dst, `,"priv_user":`...)
	dst = appendNull(dst, e.PrivUser)
	if userHost {
		dst = append(dst, `,"host":`...)
		dst = appendNull(dst, e.Host)
	}
	dst = append(dst, `,"ip":`...)
	dst = appendNull(dst, e.IP)
	if e.IPOriginal != "" {
		dst = append(dst, `,"ip_original":`...)
		dst = AppendJSONString(dst, e.IPOriginal)
	}
	dst = append(dst, `,"id":`...)
	dst = AppendJSONString(dst, e.ID)
	dst = append(dst, `,"format":`...)
	return AppendJSONString(dst, e.Format)
}

// appendTagsLog appends the tags and log fields (the same in every schema).
func (e *Event) appendTagsLog(dst []byte) []byte {
	dst = append(dst, `,"tags":[`...)
	for i, t := range e.Tags {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, t)
	}
	dst = append(dst, `],"log":{"file":{"path":`...)
	dst = AppendJSONString(dst, e.Path)
	dst = append(dst, `},"offset":`...)
	dst = strconv.AppendInt(dst, e.Offset, 10)
	return append(dst, '}')
}

// appendTimestamp appends t in UTC as 2006-01-02T15:04:05.000Z, the layout
// time.Format would give, without parsing a layout per event. Years outside
// 0-9999 (which no log holds) fall back to time.Format.
func appendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+min/10), byte('0'+min%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// sortedKeys appends m's keys to keys (room on the caller's stack for a
// few: no allocation per event for the usual handful of static fields).
func sortedKeys(keys []string, m map[string]any) []string {
	for k := range m {
		keys = append(keys, k)
	}
	// insertion sort: a handful of static fields
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func appendNull(dst []byte, s NullString) []byte {
	if !s.Valid {
		return append(dst, "null"...)
	}
	return AppendJSONString(dst, s.S)
}

const hexDigits = "0123456789abcdef"

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// needsLook reports whether any of the eight bytes in x is below 0x20, a
// '"', a '\\' or not ASCII (the classic "has a zero byte" bit trick).
func needsLook(x uint64) bool {
	zero := func(v uint64) uint64 { return (v - lsb) & ^v & msb }
	return (x&msb | (x-lsb*0x20)&^x&msb | zero(x^(lsb*'"')) | zero(x^(lsb*'\\'))) != 0
}

// AppendJSONString appends s as a JSON string. Control characters, quotes and
// backslashes are escaped; bytes that are not valid UTF-8 become U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Fast path: eight bytes at a time while none needs a look (a control
	// character, '"', '\\' or a byte of a multi-byte sequence).
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if needsLook(x) {
			break
		}
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
