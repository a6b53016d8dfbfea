package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/auditlogin/auditlogin"
)

// FormatEnterpriseAudit is MySQL Enterprise Audit's JSON format (audit_log,
// audit_log_filter): one JSON array of pretty-printed objects, one per event,
// across many lines:
//
//	[
//	{
//	  "timestamp": "2019-10-03 15:02:32",
//	  "id": 0,
//	  "class": "connection",
//	  "event": "connect",
//	  "connection_id": 11,
//	  "account": { "user": "root", "host": "localhost" },
//	  "login": { "user": "root", "os": "", "ip": "::1", "proxy": "" },
//	  "connection_data": { "connection_type": "ssl", "status": 0, "db": "" }
//	},
//	...
//
// It is streamed: each object is gathered line by line (braces counted
// outside strings) and decoded alone; the file is never loaded whole.
// class connection, event connect or change_user: a login (status 0
// successful); disconnect: a logout; other events are skipped.
const FormatEnterpriseAudit = "mysql_enterprise_audit"

// EnterpriseAudit parses MySQL Enterprise Audit JSON logs. One per file.
type EnterpriseAudit struct {
	opt     Options
	obj     []byte
	objPos  auditlogin.Position
	depth   int
	inStr   bool
	escaped bool
}

// NewEnterpriseAudit returns a parser for one Enterprise Audit JSON log.
func NewEnterpriseAudit(o Options) *EnterpriseAudit { return &EnterpriseAudit{opt: o.withDefaults()} }

// Format implements auditlogin.Formatter.
func (p *EnterpriseAudit) Format() string { return FormatEnterpriseAudit }

// Feed implements auditlogin.Parser.
func (p *EnterpriseAudit) Feed(line auditlogin.Line, emit func(auditlogin.Record)) {
	data := trimCR(line.Data)
	if line.Truncated {
		emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data), Err: errors.New("line longer than the reader's limit (cut there)")})
		p.obj, p.depth, p.inStr, p.escaped = nil, 0, false, false
		return
	}
	if p.obj == nil {
		trim := bytes.TrimSpace(data)
		if len(trim) == 0 || bytes.Equal(trim, []byte("[")) || bytes.Equal(trim, []byte("]")) || bytes.Equal(trim, []byte(",")) {
			emit(auditlogin.Record{Pos: line.Pos})
			return
		}
		trim = bytes.TrimPrefix(trim, []byte("["))
		if !bytes.HasPrefix(bytes.TrimSpace(trim), []byte("{")) {
			emit(auditlogin.Record{Pos: line.Pos, Raw: bytes.Clone(data), Err: errors.New("not an Enterprise Audit JSON object")})
			return
		}
		p.objPos = line.Pos
	}
	p.obj = append(p.obj, data...)
	p.obj = append(p.obj, '\n')
	p.objPos.End = line.Pos.End
	for _, c := range data {
		switch {
		case p.escaped:
			p.escaped = false
		case p.inStr && c == '\\':
			p.escaped = true
		case c == '"':
			p.inStr = !p.inStr
		case p.inStr:
		case c == '{':
			p.depth++
		case c == '}':
			p.depth--
		}
	}
	if p.depth > 0 {
		if len(p.obj) > 1<<20 {
			raw := p.obj
			p.obj, p.depth, p.inStr, p.escaped = nil, 0, false, false
			emit(auditlogin.Record{Pos: p.objPos, Raw: raw, Err: errors.New("audit object longer than 1 MiB")})
		}
		return
	}
	raw := bytes.TrimSpace(p.obj)
	p.obj, p.depth, p.inStr, p.escaped = nil, 0, false, false
	raw = bytes.TrimPrefix(raw, []byte("["))
	raw = bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("]")), []byte(","))
	emit(p.parse(bytes.TrimSpace(raw), p.objPos))
}

func (p *EnterpriseAudit) parse(raw []byte, pos auditlogin.Position) auditlogin.Record {
	var o struct {
		Timestamp    string `json:"timestamp"`
		Class        string `json:"class"`
		Event        string `json:"event"`
		ConnectionID int64  `json:"connection_id"`
		Account      struct {
			User, Host string
		} `json:"account"`
		Login struct {
			User, IP string
		} `json:"login"`
		Data struct {
			Type   string `json:"connection_type"`
			Status int    `json:"status"`
		} `json:"connection_data"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return auditlogin.Record{Pos: pos, Raw: bytes.Clone(raw), Err: fmt.Errorf("Enterprise Audit object: %v", err)}
	}
	if o.Class != "connection" {
		return auditlogin.Record{Pos: pos}
	}
	var typ string
	switch o.Event {
	case "connect", "change_user":
		typ = auditlogin.TypeSuccess
		if o.Data.Status != 0 {
			typ = auditlogin.TypeFailed
		}
	case "disconnect":
		if !p.opt.Logouts {
			return auditlogin.Record{Pos: pos}
		}
		typ = auditlogin.TypeLogout
	default:
		return auditlogin.Record{Pos: pos}
	}
	t, err := auditTime(o.Timestamp, p.opt.Location)
	if err != nil {
		return auditlogin.Record{Pos: pos, Raw: bytes.Clone(raw), Err: fmt.Errorf("bad timestamp %q", o.Timestamp)}
	}
	host := ""
	if o.Data.Type == "socket" {
		host = "localhost"
	}
	ev := connectionEvent(FormatEnterpriseAudit, p.opt.MyHost, o.Timestamp, t, typ, fmt.Sprint(o.ConnectionID),
		o.Login.User, o.Account.User, host, o.Login.IP, pos)
	return auditlogin.Record{Pos: pos, Event: ev}
}

// Flush implements auditlogin.Flusher: an object not closed at the end of
// a complete file is rejected.
func (p *EnterpriseAudit) Flush(emit func(auditlogin.Record)) {
	if p.obj != nil {
		raw := p.obj
		p.obj, p.depth, p.inStr, p.escaped = nil, 0, false, false
		emit(auditlogin.Record{Pos: p.objPos, Raw: raw, Err: errors.New("audit object not closed at end of file")})
	}
}
