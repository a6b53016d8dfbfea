package parser

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditlogin/auditlogin"
)

// FormatAuditLogin is the audit_login plugin's log: one JSON-looking object
// per line, written with printf and no escaping:
//
//	{"ts":"2013-09-11 09:11:47","type":"successful_login","myhost":"gromit03","thread":"74153868","user":"web_user","priv_user":"web_user","host":"web-87.localdomain","ip":"10.0.0.87"}
const FormatAuditLogin = "audit_login"

// Limits on a record whose user name holds newlines: lines are joined until
// one ends with the "ip" suffix, but no further than this.
const (
	maxRecordLines = 32
	maxRecordBytes = 16 << 10
)

// Markers of the fixed layout. The server writes every field but user (and
// priv_user, host only from the server's own data), so fields are anchored on
// these markers: ts, type, myhost, thread from the left; ip, host, priv_user
// from the right, taking the rightmost match; user is whatever lies between.
const (
	mTS       = `{"ts":"`
	mType     = `","type":"`
	mMyHost   = `","myhost":"`
	mThread   = `","thread":"`
	mUser     = `","user":"`
	mPrivUser = `","priv_user":"`
	mHost     = `","host":"`
	mIP       = `","ip":"`
	mEnd      = `"}`
)

var (
	bTS  = []byte(mTS)
	bIP  = []byte(mIP)
	bEnd = []byte(mEnd)
)

const tsLayoutLen = len("2006-01-02 15:04:05")

// AuditLogin parses the audit_login format. It reads both the original
// plugin's unescaped output and the escaping plugin's valid JSON (see
// parseJSON). One per file; not safe for concurrent use.
type AuditLogin struct {
	opt Options

	// A record begun on an earlier line (its user held a newline).
	pending      []byte
	pendingPos   auditlogin.Position
	pendingLines int
}

// NewAuditLogin returns a parser for one audit_login file.
func NewAuditLogin(o Options) *AuditLogin {
	return &AuditLogin{opt: o.withDefaults()}
}

// Feed implements auditlogin.Parser.
func (p *AuditLogin) Feed(line auditlogin.Line, emit func(auditlogin.Record)) {
	data := line.Data
	if line.Truncated {
		pos, raw := line.Pos, data
		if p.pending != nil {
			pos.Offset, raw = p.pendingPos.Offset, append(append(p.pending, '\n'), data...)
			p.pending = nil
		}
		emit(auditlogin.Record{Pos: pos, Raw: bytes.Clone(raw), Err: errors.New("line longer than the reader's limit (cut there)")})
		return
	}
	if p.pending != nil {
		// A trailing CR is kept here: it may belong to the user name.
		p.pending = append(p.pending, '\n')
		p.pending = append(p.pending, data...)
		p.pendingPos.End = line.Pos.End
		p.pendingLines++
		if complete(data) {
			rec := p.parseRecord(trimCR(p.pending), p.pendingPos)
			p.pending = nil
			emit(rec)
			return
		}
		if p.pendingLines >= maxRecordLines || len(p.pending) > maxRecordBytes {
			raw := p.pending
			p.pending = nil
			emit(auditlogin.Record{Pos: p.pendingPos, Raw: raw, Err: fmt.Errorf(
				"record not terminated by its \"ip\" suffix within %d lines / %d bytes", maxRecordLines, maxRecordBytes)})
		}
		return
	}
	if len(trimCR(data)) == 0 {
		emit(auditlogin.Record{Pos: line.Pos}) // blank line: nothing to ship
		return
	}
	if !bytes.HasPrefix(data, bTS) {
		emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data),
			Err: errors.New(`not an audit_login record: does not start with {"ts":"`)})
		return
	}
	if !complete(data) {
		// The user name held a newline: the record goes on in the next line(s).
		p.pending = append(make([]byte, 0, len(data)*2), data...)
		p.pendingPos = line.Pos
		p.pendingLines = 1
		return
	}
	if p.opt.Pasted && bytes.Contains(data, pastedSep) {
		p.feedPasted(trimCR(data), line.Pos, emit)
		return
	}
	emit(p.parseRecord(trimCR(data), line.Pos))
}

var pastedSep = []byte(`"} {"ts":"`)

// feedPasted splits a line of records pasted with spaces between them; each
// record's position is its own bytes of the line (the last one to the line's
// end), so offsets stay contiguous.
func (p *AuditLogin) feedPasted(data []byte, pos auditlogin.Position, emit func(auditlogin.Record)) {
	start := 0
	for start < len(data) {
		end := len(data)
		if i := bytes.Index(data[start:], pastedSep); i >= 0 {
			end = start + i + 2 // keep `"}` with this record
		}
		seg := bytes.TrimSpace(data[start:end])
		rp := auditlogin.Position{File: pos.File, Path: pos.Path, Offset: pos.Offset + int64(start), End: pos.Offset + int64(end)}
		next := end
		for next < len(data) && data[next] == ' ' {
			next++
		}
		if next >= len(data) {
			rp.End = pos.End
		} else {
			rp.End = pos.Offset + int64(next)
		}
		emit(p.parseRecord(seg, rp))
		start = next
	}
}

// Format implements auditlogin.Formatter.
func (p *AuditLogin) Format() string { return FormatAuditLogin }

// Flush implements auditlogin.Flusher: an unterminated record at the end of
// a complete file is rejected.
func (p *AuditLogin) Flush(emit func(auditlogin.Record)) {
	if p.pending == nil {
		return
	}
	raw := p.pending
	p.pending = nil
	emit(auditlogin.Record{Pos: p.pendingPos, Raw: raw, Err: errors.New(`record not terminated by its "ip" suffix at end of file`)})
}

// trimCR drops one trailing CR (CRLF files, pasted or copied from Windows):
// the ip suffix is server-written, so a CR after it is never the user's.
func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// complete reports whether a line ends a record: `","ip":"<ip>"}` (then an
// optional CR) where the ip holds no quote (the server writes an address or
// "(null)").
func complete(b []byte) bool {
	b = trimCR(b)
	if bytes.HasSuffix(b, escapedMarker) {
		return true // the escaping plugin: one line a record, always
	}
	if !bytes.HasSuffix(b, bEnd) {
		return false
	}
	// The ip holds no quote, so its opening quote is the last one before
	// the end, and the marker must end there (a backward scan of the
	// ip's bytes, not bytes.LastIndex's hashing: 1.3 % of the agent's CPU).
	// Before the end only: `","ip":"}` shares its quote with it.
	end := len(b) - len(bEnd)
	q := bytes.LastIndexByte(b[:end], '"')
	return q+1 >= len(bIP) && bytes.Equal(b[q+1-len(bIP):q+1], bIP) && end-(q+1) <= 64
}

func (p *AuditLogin) parseRecord(b []byte, pos auditlogin.Position) auditlogin.Record {
	ev, err := p.parse(b)
	if err != nil {
		return auditlogin.Record{Pos: pos, Raw: bytes.Clone(b), Err: err}
	}
	ev.Path = pos.Path
	ev.Offset = pos.Offset
	return auditlogin.Record{Pos: pos, Event: ev}
}

// parse parses one complete record (possibly holding newlines in the user).
func (p *AuditLogin) parse(b []byte) (*auditlogin.Event, error) {
	if bytes.HasSuffix(bytes.TrimRight(b, " \t\r"), escapedMarker) {
		// The escaping plugin's record: its marker ends it, and the
		// original plugin's records always end with the ip's closing quote.
		// Only these are decoded as JSON.
		if ev, ok := p.parseJSON(b); ok {
			return ev, nil
		}
		return nil, errors.New(`record ends with the escaping plugin's "escaped":true but is not its valid JSON`)
	}
	// The original plugin's record: strings are bytes, taken as written
	// (a record that happens to be valid JSON is not decoded: the client
	// chooses the user name, and \u0072oot is not root).
	// One allocation holds every field: the event's strings are slices of it.
	s := string(b)
	return p.parsePositional(s)
}

func (p *AuditLogin) parsePositional(s string) (*auditlogin.Event, error) {
	// From the left: {"ts":"<19>","type":"<type>","myhost":"<host>","thread":"<digits>","user":"
	i := len(mTS)
	if len(s) < i+tsLayoutLen {
		return nil, errors.New("record too short")
	}
	ts := s[i : i+tsLayoutLen]
	t, ok := parseTS(ts, p.opt.Location)
	if !ok {
		return nil, fmt.Errorf("bad ts %q: want YYYY-MM-DD HH:MM:SS", ts)
	}
	i += tsLayoutLen
	if !hasAt(s, i, mType) {
		return nil, errors.New(`expected "type" after "ts"`)
	}
	i += len(mType)
	var typ string
	switch {
	case hasAt(s, i, auditlogin.TypeSuccess):
		typ = auditlogin.TypeSuccess
	case hasAt(s, i, auditlogin.TypeFailed):
		typ = auditlogin.TypeFailed
	default:
		return nil, errors.New(`unknown "type": want successful_login or failed_login`)
	}
	i += len(typ)
	if !hasAt(s, i, mMyHost) {
		return nil, errors.New(`expected "myhost" after "type"`)
	}
	i += len(mMyHost)
	j := indexFrom(s, i, mThread)
	if j < 0 {
		return nil, errors.New(`expected "thread" after "myhost"`)
	}
	myhost := s[i:j]
	i = j + len(mThread)
	k := i
	for k < len(s) && s[k] >= '0' && s[k] <= '9' {
		k++
	}
	if k == i || !hasAt(s, k, mUser) {
		return nil, errors.New(`"thread" must be digits followed by "user"`)
	}
	thread := s[i:k]
	userStart := k + len(mUser)

	// From the right: ","priv_user":"<p>","host":"<h>","ip":"<ip>"}
	end := len(s) - len(mEnd)
	if end < userStart || s[end:] != mEnd {
		return nil, errors.New(`record does not end with "}`)
	}
	ipAt := lastIndexBefore(s, end, mIP)
	if ipAt < userStart {
		return nil, errors.New(`missing "ip"`)
	}
	hostAt := lastIndexBefore(s, ipAt, mHost)
	if hostAt < userStart {
		return nil, errors.New(`missing "host" before "ip"`)
	}
	privAt := lastIndexBefore(s, hostAt, mPrivUser)
	if privAt < userStart {
		return nil, errors.New(`missing "priv_user" before "host"`)
	}
	ev := auditlogin.NewEvent()
	ev.Timestamp, ev.TS, ev.Type, ev.MyHost, ev.Thread = t, ts, typ, myhost, thread
	ev.User = nullable(s[userStart:privAt])
	ev.PrivUser = nullable(s[privAt+len(mPrivUser) : hostAt])
	ev.Host = nullable(s[hostAt+len(mHost) : ipAt])
	ev.IP = nullable(s[ipAt+len(mIP) : end])
	ev.Format = FormatAuditLogin
	if suspicious(ev.User.S) {
		ev.Tags = append(ev.Tags, auditlogin.TagSuspiciousUser)
	}
	return ev, nil
}

// escapedMarker ends every record of the escaping plugin (plugin/).
var escapedMarker = []byte(`,"escaped":true}`)

// parseJSON reads a record written by the escaping plugin (plugin/): valid
// JSON, exactly the eight keys in the documented order and the marker
// "escaped":true; ts, type, myhost and thread strings, the others strings or
// null (null: the server had no value; the string "(null)" is a user of that
// name). Its escapes are decoded by the plugin's convention: \u0080 to
// \u00ff stand for the raw byte (valid UTF-8 is never escaped, so they can
// only come from a byte that was not), every other escape as JSON says.
func (p *AuditLogin) parseJSON(b []byte) (*auditlogin.Event, bool) {
	keys := [...]string{"ts", "type", "myhost", "thread", "user", "priv_user", "host", "ip"}
	var vals [8]auditlogin.NullString
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	for k, key := range keys {
		i = skipSpace(b, i)
		if k > 0 {
			if i >= len(b) || b[i] != ',' {
				return nil, false
			}
			i = skipSpace(b, i+1)
		}
		name, n, ok := decodeJSONString(b[i:])
		if !ok || name != key {
			return nil, false
		}
		i = skipSpace(b, i+n)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		if k >= 4 && bytes.HasPrefix(b[i:], []byte("null")) {
			vals[k] = auditlogin.Null
			i += 4
			continue
		}
		v, n, ok := decodeJSONString(b[i:])
		if !ok {
			return nil, false
		}
		vals[k] = auditlogin.Str(v)
		i += n
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ',' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if name, n, ok := decodeJSONString(b[i:]); !ok || name != "escaped" {
		return nil, false
	} else {
		i = skipSpace(b, i+n)
	}
	if i >= len(b) || b[i] != ':' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if !bytes.HasPrefix(b[i:], []byte("true")) {
		return nil, false
	}
	i = skipSpace(b, i+4)
	if i >= len(b) || b[i] != '}' || skipSpace(b, i+1) != len(b) {
		return nil, false
	}
	if len(vals[0].S) != tsLayoutLen || (vals[1].S != auditlogin.TypeSuccess && vals[1].S != auditlogin.TypeFailed) {
		return nil, false
	}
	t, ok := parseTS(vals[0].S, p.opt.Location)
	if !ok {
		return nil, false
	}
	if vals[3].S == "" {
		return nil, false
	}
	for _, c := range []byte(vals[3].S) {
		if c < '0' || c > '9' {
			return nil, false
		}
	}
	ev := &auditlogin.Event{
		Timestamp: t, TS: vals[0].S, Type: vals[1].S, MyHost: vals[2].S, Thread: vals[3].S,
		User: vals[4], PrivUser: vals[5], Host: vals[6], IP: vals[7],
		Format: FormatAuditLogin,
	}
	if suspicious(ev.User.S) {
		ev.Tags = append(ev.Tags, auditlogin.TagSuspiciousUser)
	}
	return ev, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// decodeJSONString decodes the JSON string literal at the start of b,
// returning its value and the bytes consumed. Raw control characters are
// refused (JSON forbids them); \u0080..\u00ff become the raw byte (the
// plugin's convention), other \u escapes UTF-8 (with surrogate pairs).
func decodeJSONString(b []byte) (string, int, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", 0, false
	}
	var out []byte
	for i := 1; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return string(out), i + 1, true
		case c < 0x20:
			return "", 0, false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", 0, false
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return "", 0, false
			}
			switch {
			case r >= 0x80 && r <= 0xff:
				out = append(out, byte(r))
			case r >= 0xd800 && r < 0xdc00:
				lo, ok := hex4(b, i+8)
				if !ok || i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' || lo < 0xdc00 || lo > 0xdfff {
					return "", 0, false
				}
				out = utf8.AppendRune(out, 0x10000+(r-0xd800)<<10+(lo-0xdc00))
				i += 6
			default:
				out = utf8.AppendRune(out, r)
			}
			i += 4
		default:
			return "", 0, false
		}
		i += 2
	}
	return "", 0, false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return r, true
}

// nullable maps the plugin's "(null)" (printf of a NULL pointer) to null.
func nullable(s string) auditlogin.NullString {
	if s == "(null)" {
		return auditlogin.Null
	}
	return auditlogin.Str(s)
}

// suspicious reports a user name that holds a quote, a backslash or a control
// character (newline included): nothing a real account is named, and what an
// attempt to forge or break records looks like.
func suspicious(u string) bool {
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

func hasAt(s string, i int, m string) bool {
	return len(s)-i >= len(m) && s[i:i+len(m)] == m
}

func indexFrom(s string, from int, m string) int {
	if from > len(s) {
		return -1
	}
	j := strings.Index(s[from:], m)
	if j < 0 {
		return -1
	}
	return from + j
}

// lastIndexBefore is strings.LastIndex(s[:before], m) for the short
// markers here, whose match is a field's length away: a backward scan for
// the marker's last byte, comparing at each candidate, instead of
// Rabin-Karp's hash of the whole prefix (3 % of the agent's CPU). The last
// byte: the markers end with the quote that opens a value, and the values
// here hold none, so the first candidate matches (scanning for the first
// byte, also a quote, met the marker's own three other quotes first: 2.4 %).
// At worst (a user name of quotes) it compares len(m) bytes per byte.
func lastIndexBefore(s string, before int, m string) int {
	last := len(m) - 1
	c := m[last]
	for j := before - 1; j >= last; j-- {
		j = strings.LastIndexByte(s[:j+1], c)
		if j < last {
			return -1
		}
		if s[j-last:j+1] == m {
			return j - last
		}
	}
	return -1
}

// parseTS parses "YYYY-MM-DD HH:MM:SS" in loc without the generality (and
// cost) of time.ParseInLocation.
func parseTS(s string, loc *time.Location) (time.Time, bool) {
	if len(s) != tsLayoutLen || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 7)
	d, ok3 := num(8, 10)
	h, ok4 := num(11, 13)
	mi, ok5 := num(14, 16)
	se, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	t, err := wallClock(y, mo, d, h, mi, se, 0, loc)
	return t.UTC(), err == nil
}
