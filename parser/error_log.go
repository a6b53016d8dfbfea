package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
)

// FormatErrorLog is the server's error log, for its failed logins:
//
//	2026-11-25 19:17:15 57 [Warning] Access denied for user 'u'@'127.0.0.1' (using password: YES)        MariaDB (log_warnings >= 2)
//	2026-11-25T10:00:00.123456Z 17 [Note] [MY-010926] [Server] Access denied for user 'u'@'h' (using password: YES)   MySQL 8
//	{ "prio" : 2, "err_code" : 10926, ..., "msg" : "Access denied for user ...", "time" : "...", "thread" : 17, ... }  MySQL 8 JSON sink
//
// and MariaDB's "Aborted connection N ... (This connection closed normally
// without authentication)": a connection that sent no credentials. Other
// lines carry no login and are skipped. The error log names no server:
// myhost comes from the input's config or this machine's hostname.
const FormatErrorLog = "error_log"

// ErrorLog parses error logs. One per file.
type ErrorLog struct{ opt Options }

// NewErrorLog returns a parser for one error log.
func NewErrorLog(o Options) *ErrorLog { return &ErrorLog{opt: o.withDefaults()} }

// Format implements auditlogin.Formatter.
func (p *ErrorLog) Format() string { return FormatErrorLog }

// Feed implements auditlogin.Parser.
func (p *ErrorLog) Feed(line auditlogin.Line, emit func(auditlogin.Record)) {
	data := trimCR(line.Data)
	if line.Truncated {
		emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data), Err: errors.New("line longer than the reader's limit (cut there)")})
		return
	}
	ev, err := p.parse(string(data))
	switch {
	case err != nil:
		emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data), Err: err})
	case ev == nil:
		emit(auditlogin.Record{Pos: line.Pos})
	default:
		ev.Path, ev.Offset = line.Pos.Path, line.Pos.Offset
		emit(auditlogin.Record{Pos: line.Pos, Event: ev})
	}
}

const (
	deniedPrefix  = "Access denied for user '"
	abortedMarker = "(This connection closed normally without authentication)"
)

func (p *ErrorLog) parse(s string) (*auditlogin.Event, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		return p.parseJSON(s)
	}
	if !strings.Contains(s, deniedPrefix) && !strings.Contains(s, abortedMarker) {
		return nil, nil
	}
	// "<ts> <thread> [Level] ... message": the timestamp is one field
	// (2026-11-25T10:00:00.123456Z), or a date and a time separated by one
	// space, or two before an hour below 10 (2026-12-01  0:47:48, 261201  0:04:00).
	ts, rest, ok := splitStamp(s)
	if !ok {
		return nil, errors.New("no timestamp")
	}
	var t time.Time
	var err error
	if t, err = time.Parse(time.RFC3339Nano, ts); err != nil { // MySQL 8: with its zone
		t, err = localStamp(ts, p.opt.Location)
	}
	if err != nil {
		return nil, fmt.Errorf("bad timestamp %q: %v", ts, err)
	}
	thread := ""
	if sp := strings.IndexByte(rest, ' '); sp > 0 && isDigits(rest[:sp]) {
		thread = rest[:sp]
	}
	i := strings.Index(rest, deniedPrefix)
	if i < 0 {
		i = strings.Index(rest, "Aborted connection")
	}
	return p.event(ts, t, thread, rest[i:])
}

// splitStamp splits a line into its leading timestamp (one field with a
// 'T', or a date field and a time field, with up to two spaces between)
// and the rest after the spaces that follow it.
func splitStamp(s string) (ts, rest string, ok bool) {
	first := strings.IndexByte(s, ' ')
	if first <= 0 {
		return "", "", false
	}
	end := first
	if !strings.Contains(s[:first], "T") {
		j := first + 1
		if j < len(s) && s[j] == ' ' {
			j++
		}
		k := strings.IndexByte(s[j:], ' ')
		if k <= 0 {
			return "", "", false
		}
		end = j + k
	}
	return s[:end], strings.TrimLeft(s[end:], " "), true
}

// event makes the failed login of an "Access denied" or "Aborted
// connection" message.
func (p *ErrorLog) event(ts string, t time.Time, thread, msg string) (*auditlogin.Event, error) {
	ev := &auditlogin.Event{Timestamp: t.UTC(), TS: ts, Type: auditlogin.TypeFailed, MyHost: p.opt.MyHost, Thread: thread, Format: FormatErrorLog}
	if strings.HasPrefix(msg, "Aborted connection") {
		if !strings.Contains(msg, abortedMarker) {
			return nil, nil
		}
		// ... host: '127.0.0.1' (This connection closed ...)
		h := msg[:strings.LastIndex(msg, abortedMarker)]
		j := strings.LastIndex(h, "host: '")
		if j < 0 {
			return nil, errors.New("aborted connection without host")
		}
		host := strings.TrimSuffix(strings.TrimSpace(h[j+len("host: '"):]), "'")
		if thread == "" {
			fmt.Sscanf(msg, "Aborted connection %s", &thread)
			ev.Thread = thread
		}
		ev.User, ev.PrivUser = auditlogin.Null, auditlogin.Null
		ev.Host, ev.IP = hostOrIP(host)
		return ev, nil
	}
	user, host, err := deniedUserHost(msg)
	if err != nil {
		return nil, err
	}
	ev.User, ev.PrivUser = auditlogin.Str(user), auditlogin.Str("")
	ev.Host, ev.IP = hostOrIP(host)
	if suspicious(user) || strings.Contains(user, "'") {
		ev.Tags = append(ev.Tags, auditlogin.TagSuspiciousUser)
	}
	return ev, nil
}

// deniedUserHost reads "Access denied for user 'USER'@'HOST' (using
// password: YES)". The user is the client's and unescaped: the host, written
// by the server, is taken from the right, after the last "'@'".
func deniedUserHost(msg string) (string, string, error) {
	if !strings.HasPrefix(msg, deniedPrefix) {
		return "", "", errors.New("not an Access denied message")
	}
	body := msg[len(deniedPrefix):]
	end := strings.LastIndex(body, "' (using password: ")
	if end < 0 {
		end = strings.LastIndex(body, "'")
	}
	if end < 0 {
		return "", "", errors.New("Access denied message without 'user'@'host'")
	}
	body = body[:end]
	at := strings.LastIndex(body, "'@'")
	if at < 0 {
		return "", "", errors.New("Access denied message without 'user'@'host'")
	}
	return body[:at], body[at+3:], nil
}

func (p *ErrorLog) parseJSON(s string) (*auditlogin.Event, error) {
	var r struct {
		Msg    string          `json:"msg"`
		Time   string          `json:"time"`
		Thread json.RawMessage `json:"thread"`
		Symbol string          `json:"err_symbol"`
	}
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("JSON log line: %v", err)
	}
	if !strings.HasPrefix(r.Msg, deniedPrefix) {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return nil, fmt.Errorf("bad time %q", r.Time)
	}
	return p.event(r.Time, t, strings.Trim(string(r.Thread), `"`), r.Msg)
}
