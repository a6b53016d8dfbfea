package parser

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
)

// FormatPerconaAudit is Percona Server's audit_log plugin, in its four
// formats: JSON (one record a line), XML new style (one element a record,
// across lines), XML old style (one element with attributes, across lines)
// and CSV:
//
//	{"audit_record":{"name":"Connect","record":"7_2024-09-03T01:53:14","timestamp":"2024-09-03T01:53:33Z","connection_id":"993","status":1156,"user":"",...}}
//	<AUDIT_RECORD> <NAME>Connect</NAME> ... </AUDIT_RECORD>
//	<AUDIT_RECORD NAME="Connect" ... />
//	"Connect","2_2014-04-21T12:34:32","2014-04-21T12:34:32 UTC","1",0,"root","root","","","localhost","",""
//
// Connect and Change user records are logins (status 0 successful, else
// failed); Quit is a logout; everything else is skipped. The records name no
// server: myhost is the input's or this machine's.
const FormatPerconaAudit = "percona_audit"

// PerconaAudit parses Percona audit logs. One per file.
type PerconaAudit struct {
	opt        Options
	pending    []byte
	pendingPos auditlogin.Position
	lines      int
}

// NewPerconaAudit returns a parser for one Percona audit log.
func NewPerconaAudit(o Options) *PerconaAudit { return &PerconaAudit{opt: o.withDefaults()} }

// Format implements auditlogin.Formatter.
func (p *PerconaAudit) Format() string { return FormatPerconaAudit }

// maxXMLRecordLines: an XML record has one element a line; past this many
// lines (or maxRecordBytes) without its closing tag it is rejected.
const maxXMLRecordLines = 200

type auditRecord struct {
	Name, Timestamp, ConnectionID, Status, User, PrivUser, Host, IP string
}

// Feed implements auditlogin.Parser.
func (p *PerconaAudit) Feed(line auditlogin.Line, emit func(auditlogin.Record)) {
	data := trimCR(line.Data)
	trim := bytes.TrimSpace(data)
	if line.Truncated {
		p.reject(line.Pos, data, errors.New("line longer than the reader's limit (cut there)"), emit)
		return
	}
	if p.pending != nil { // inside an XML record
		p.pending = append(append(p.pending, '\n'), data...)
		p.pendingPos.End = line.Pos.End
		p.lines++
		if closesXML(trim) {
			p.finishXML(emit)
		} else if p.lines > maxXMLRecordLines || len(p.pending) > maxRecordBytes {
			raw, pos := p.pending, p.pendingPos
			p.pending = nil
			emit(auditlogin.Record{Pos: pos, Raw: raw, Err: fmt.Errorf("XML audit record not closed within %d lines / %d bytes", maxXMLRecordLines, maxRecordBytes)})
		}
		return
	}
	switch {
	case len(trim) == 0, bytes.HasPrefix(trim, []byte("<?xml")), bytes.Equal(trim, []byte("<AUDIT>")), bytes.Equal(trim, []byte("</AUDIT>")):
		emit(auditlogin.Record{Pos: line.Pos})
	case bytes.HasPrefix(trim, []byte("<AUDIT_RECORD")):
		p.pending, p.pendingPos, p.lines = append([]byte(nil), data...), line.Pos, 1
		if closesXML(trim) {
			p.finishXML(emit)
		}
	case bytes.HasPrefix(trim, []byte("{")):
		var j struct {
			R struct {
				Name         string          `json:"name"`
				Timestamp    string          `json:"timestamp"`
				ConnectionID json.RawMessage `json:"connection_id"`
				Status       json.RawMessage `json:"status"`
				User         string          `json:"user"`
				PrivUser     string          `json:"priv_user"`
				Host         string          `json:"host"`
				IP           string          `json:"ip"`
			} `json:"audit_record"`
		}
		if err := json.Unmarshal(trim, &j); err != nil || j.R.Name == "" {
			p.reject(line.Pos, data, fmt.Errorf("not a Percona JSON audit record: %v", err), emit)
			return
		}
		p.emitRecord(auditRecord{Name: j.R.Name, Timestamp: j.R.Timestamp, ConnectionID: strings.Trim(string(j.R.ConnectionID), `"`),
			Status: strings.Trim(string(j.R.Status), `"`), User: j.R.User, PrivUser: j.R.PrivUser, Host: j.R.Host, IP: j.R.IP}, line.Pos, emit)
	case bytes.HasPrefix(trim, []byte(`"`)):
		r := csv.NewReader(bytes.NewReader(trim))
		r.LazyQuotes = true
		f, err := r.Read()
		if err != nil || len(f) < 11 {
			p.reject(line.Pos, data, fmt.Errorf("not a Percona CSV audit record: %v", err), emit)
			return
		}
		// name, record, timestamp, connection_id, status, user, priv_user, os_login, proxy_user, host, ip, db
		p.emitRecord(auditRecord{Name: f[0], Timestamp: f[2], ConnectionID: f[3], Status: f[4], User: f[5], PrivUser: f[6], Host: f[9], IP: f[10]}, line.Pos, emit)
	default:
		p.reject(line.Pos, data, errors.New("not a Percona audit record (JSON, XML or CSV)"), emit)
	}
}

func closesXML(line []byte) bool {
	return bytes.HasSuffix(line, []byte("/>")) || bytes.HasSuffix(line, []byte("</AUDIT_RECORD>"))
}

func (p *PerconaAudit) finishXML(emit func(auditlogin.Record)) {
	raw, pos := p.pending, p.pendingPos
	p.pending = nil
	var r auditRecord
	if err := decodeXMLRecord(raw, &r); err != nil {
		emit(auditlogin.Record{Pos: pos, Raw: raw, Err: err})
		return
	}
	p.emitRecord(r, pos, emit)
}

// Flush implements auditlogin.Flusher: an XML record not closed at the end
// of a complete file is rejected.
func (p *PerconaAudit) Flush(emit func(auditlogin.Record)) {
	if p.pending != nil {
		raw, pos := p.pending, p.pendingPos
		p.pending = nil
		emit(auditlogin.Record{Pos: pos, Raw: raw, Err: errors.New("XML audit record not closed at end of file")})
	}
}

func (p *PerconaAudit) reject(pos auditlogin.Position, data []byte, err error, emit func(auditlogin.Record)) {
	emit(auditlogin.Record{Pos: pos, Raw: bytes.Clone(data), Err: err})
}

// decodeXMLRecord reads either style of <AUDIT_RECORD>.
func decodeXMLRecord(raw []byte, r *auditRecord) error {
	var x struct {
		Attrs        []xml.Attr `xml:",any,attr"`
		Name         string     `xml:"NAME"`
		Timestamp    string     `xml:"TIMESTAMP"`
		ConnectionID string     `xml:"CONNECTION_ID"`
		Status       string     `xml:"STATUS"`
		User         string     `xml:"USER"`
		PrivUser     string     `xml:"PRIV_USER"`
		Host         string     `xml:"HOST"`
		IP           string     `xml:"IP"`
	}
	if err := xml.Unmarshal(raw, &x); err != nil {
		return fmt.Errorf("XML audit record: %v", err)
	}
	*r = auditRecord{Name: x.Name, Timestamp: x.Timestamp, ConnectionID: x.ConnectionID, Status: x.Status, User: x.User, PrivUser: x.PrivUser, Host: x.Host, IP: x.IP}
	for _, a := range x.Attrs { // old style: attributes
		switch a.Name.Local {
		case "NAME":
			r.Name = a.Value
		case "TIMESTAMP":
			r.Timestamp = a.Value
		case "CONNECTION_ID":
			r.ConnectionID = a.Value
		case "STATUS":
			r.Status = a.Value
		case "USER":
			r.User = a.Value
		case "PRIV_USER":
			r.PrivUser = a.Value
		case "HOST":
			r.Host = a.Value
		case "IP":
			r.IP = a.Value
		}
	}
	if r.Name == "" {
		return errors.New("XML audit record without NAME")
	}
	return nil
}

// auditTime reads the audit plugins' timestamps: RFC 3339, "... UTC", or a
// local "2006-01-02 15:04:05".
func auditTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02T15:04:05 MST", s); err == nil {
		return t, nil
	}
	return localStamp(s, loc)
}

func (p *PerconaAudit) emitRecord(r auditRecord, pos auditlogin.Position, emit func(auditlogin.Record)) {
	var typ string
	switch r.Name {
	case "Connect", "Change user":
		typ = auditlogin.TypeSuccess
		if r.Status != "0" {
			typ = auditlogin.TypeFailed
		}
	case "Quit":
		if !p.opt.Logouts {
			emit(auditlogin.Record{Pos: pos})
			return
		}
		typ = auditlogin.TypeLogout
	default:
		emit(auditlogin.Record{Pos: pos})
		return
	}
	t, err := auditTime(r.Timestamp, p.opt.Location)
	if err != nil {
		emit(auditlogin.Record{Pos: pos, Err: fmt.Errorf("bad timestamp %q", r.Timestamp)})
		return
	}
	ev := connectionEvent(FormatPerconaAudit, p.opt.MyHost, r.Timestamp, t, typ, r.ConnectionID, r.User, r.PrivUser, r.Host, r.IP, pos)
	emit(auditlogin.Record{Pos: pos, Event: ev})
}

// connectionEvent maps an audit plugin's connection record: an empty user
// is a connection that sent no credentials; host "localhost" with no ip is
// the socket.
func connectionEvent(format, myhost, ts string, t time.Time, typ, thread, user, priv, host, ip string, pos auditlogin.Position) *auditlogin.Event {
	ev := &auditlogin.Event{Timestamp: t.UTC(), TS: ts, Type: typ, MyHost: myhost, Thread: thread, Format: format,
		Path: pos.Path, Offset: pos.Offset}
	if user == "" {
		ev.User, ev.PrivUser = auditlogin.Null, auditlogin.Null
	} else {
		ev.User, ev.PrivUser = auditlogin.Str(user), auditlogin.Str("")
		if typ == auditlogin.TypeSuccess {
			ev.PrivUser = auditlogin.Str(priv)
		}
	}
	ev.Host, ev.IP = auditlogin.Null, auditlogin.Null
	if host != "" {
		ev.Host = auditlogin.Str(host)
	}
	if ip != "" {
		ev.IP = auditlogin.Str(ip)
	}
	if suspicious(user) {
		ev.Tags = append(ev.Tags, auditlogin.TagSuspiciousUser)
	}
	return ev
}
