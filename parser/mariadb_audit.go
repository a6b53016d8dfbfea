package parser

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
)

// FormatMariaDBAudit is MariaDB's server_audit plugin, file output
//
//	20261125 19:17:15,vm,fmt_u,127.0.0.1,56,0,CONNECT,,,0
//
// and syslog output (the same fields after the syslog prefix, without the
// timestamp):
//
//	Nov 25 19:17:15 vm mysql-server_auditing: vm,fmt_u,127.0.0.1,56,0,CONNECT,,,0
//
// Fields: serverhost, username, host, connectionid, queryid, operation,
// database, object, retcode. The user name and the database are the
// client's, written unescaped (a user name may hold commas), so the parse
// anchors on server-written fields: the timestamp and serverhost from the
// left, then the first `,host,connid,queryid,OPERATION,` after them.
const FormatMariaDBAudit = "mariadb_audit"

var auditOp = regexp.MustCompile(`,([^,\s]*),(\d+),(\d+),(CONNECT|FAILED_CONNECT|DISCONNECT|CHANGEUSER|PROXY_CONNECT|QUERY[A-Z_]*|READ|WRITE|CREATE|ALTER|RENAME|DROP|TABLE)(,|$)`)

// MariaDBAudit parses server_audit logs. One per file.
type MariaDBAudit struct{ opt Options }

// NewMariaDBAudit returns a parser for one server_audit file.
func NewMariaDBAudit(o Options) *MariaDBAudit { return &MariaDBAudit{opt: o.withDefaults()} }

// Format implements auditlogin.Formatter.
func (p *MariaDBAudit) Format() string { return FormatMariaDBAudit }

// Feed implements auditlogin.Parser.
func (p *MariaDBAudit) Feed(line auditlogin.Line, emit func(auditlogin.Record)) {
	data := trimCR(line.Data)
	if line.Truncated {
		emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data), Err: errors.New("line longer than the reader's limit (cut there)")})
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		emit(auditlogin.Record{Pos: line.Pos})
		return
	}
	ev, skip, err := p.parse(string(data))
	switch {
	case err != nil:
		emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data), Err: err})
	case skip:
		emit(auditlogin.Record{Pos: line.Pos}) // a query or table event: not a login
	default:
		ev.Path, ev.Offset = line.Pos.Path, line.Pos.Offset
		emit(auditlogin.Record{Pos: line.Pos, Event: ev})
	}
}

func (p *MariaDBAudit) parse(s string) (*auditlogin.Event, bool, error) {
	var ts string
	var t time.Time
	var payload string
	if len(s) > 18 && s[8] == ' ' && s[17] == ',' && isDigits(s[:8]) {
		ts, payload = s[:17], s[18:]
		var err error
		if t, err = localStamp(ts, p.opt.Location); err != nil {
			return nil, false, fmt.Errorf("bad timestamp %q: want YYYYMMDD HH:MM:SS (%v)", ts, err)
		}
	} else if i := strings.Index(s, ": "); i > 15 {
		// syslog: "Mon _2 15:04:05 host ident: payload"
		var err error
		ts = s[:15]
		if t, err = syslogTime(ts, p.opt.Location, p.opt.Now()); err != nil {
			return nil, false, errors.New("not a server_audit record: no YYYYMMDD timestamp and no syslog prefix")
		}
		payload = s[i+2:]
	} else {
		return nil, false, errors.New("not a server_audit record: no YYYYMMDD timestamp and no syslog prefix")
	}
	comma := strings.IndexByte(payload, ',')
	if comma <= 0 {
		return nil, false, errors.New("no serverhost field")
	}
	serverhost := payload[:comma]
	rest := payload[comma:] // starts with the comma before the user
	m := auditOp.FindStringSubmatchIndex(rest[1:])
	if m == nil {
		return nil, false, errors.New("no ,host,connectionid,queryid,operation, fields")
	}
	user := rest[1 : 1+m[0]]
	host, connid, op := rest[1+m[2]:1+m[3]], rest[1+m[4]:1+m[5]], rest[1+m[8]:1+m[9]]
	retcode := payload[strings.LastIndexByte(payload, ',')+1:]
	var typ string
	switch op {
	case "CONNECT", "CHANGEUSER":
		typ = auditlogin.TypeSuccess
		if retcode != "0" {
			typ = auditlogin.TypeFailed
		}
	case "PROXY_CONNECT":
		typ = auditlogin.TypeSuccess
	case "FAILED_CONNECT":
		typ = auditlogin.TypeFailed
	case "DISCONNECT":
		if !p.opt.Logouts {
			return nil, true, nil
		}
		typ = auditlogin.TypeLogout
	default:
		return nil, true, nil
	}
	ev := &auditlogin.Event{Timestamp: t.UTC(), TS: ts, Type: typ, MyHost: serverhost, Thread: connid, Format: FormatMariaDBAudit}
	// An empty user name is a connection that sent no credentials (a TCP
	// connect closed before the handshake: retcode 1158).
	if user == "" {
		ev.User, ev.PrivUser = auditlogin.Null, auditlogin.Null
	} else {
		ev.User = auditlogin.Str(user)
		ev.PrivUser = auditlogin.Str("")
		if typ == auditlogin.TypeSuccess {
			ev.PrivUser = auditlogin.Str(user) // server_audit logs no separate account name
		}
	}
	ev.Host, ev.IP = hostOrIP(host)
	if suspicious(user) || strings.ContainsAny(user, ",") {
		ev.Tags = append(ev.Tags, auditlogin.TagSuspiciousUser)
	}
	return ev, false, nil
}

// hostOrIP maps a server's client-host field: an address is the ip (no host
// name known), "localhost" the socket (no ip), anything else a host name.
func hostOrIP(h string) (host, ip auditlogin.NullString) {
	switch {
	case h == "":
		return auditlogin.Null, auditlogin.Null
	case net.ParseIP(h) != nil:
		return auditlogin.Null, auditlogin.Str(h)
	default:
		return auditlogin.Str(h), auditlogin.Null
	}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}
