package parser

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
)

// FormatGeneralLog is the general query log, for its Connect lines.
//
// MariaDB prints a timestamp only when it changes, and its Connect line
// comes before authentication; a failure follows as a second Connect line:
//
//	261125 19:17:15	    56 Connect	fmt_u@127.0.0.1 on  using TCP/IP
//			    57 Connect	fmt_u@127.0.0.1 on  using TCP/IP
//			    57 Connect	Access denied for user 'fmt_u'@'127.0.0.1' (using password: YES)
//
// MySQL 5.7/8 prints an RFC 3339 timestamp on every line:
//
//	2026-11-25T10:00:00.123456Z	   15 Connect	root@localhost on  using Socket
//
// So a Connect line is a successful login only once the same connection's
// next line is not an Access denied: it is held until then (or until
// maxGeneralPending lines later, or the end of a complete file), and the
// lines after it with it, to keep records in file order. Quit is a logout.
// The general log names no server: myhost is the input's or this machine's.
// Query text is not escaped by the server: a query holding a newline and a
// forged Connect line cannot be told apart from a real one.
const FormatGeneralLog = "general_log"

const maxGeneralPending = 1000

var (
	mysqlGeneralLine   = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\s+(\d+) (\S+)\t?(.*)$`)
	mariadbGeneralLine = regexp.MustCompile(`^(\d{6} [ \d]\d:\d\d:\d\d)?\t\s*(\d+) (\S+)\t?(.*)$`)
	connectArgument    = regexp.MustCompile(`^(.*)@([^@\s]*)(?: as (\S+))? on (.*?)(?: using (\S+))?$`)
)

// GeneralLog parses general query logs. One per file.
type GeneralLog struct {
	opt      Options
	lastTS   string
	lastTime time.Time
	queue    []queued       // records held behind an unresolved Connect, in file order
	pending  map[string]int // thread → index in queue of its unresolved Connect
	base     int            // queue index offset (records already emitted)
}

type queued struct {
	rec     auditlogin.Record
	pending bool
}

// NewGeneralLog returns a parser for one general log.
func NewGeneralLog(o Options) *GeneralLog {
	return &GeneralLog{opt: o.withDefaults(), pending: map[string]int{}}
}

// Format implements auditlogin.Formatter.
func (p *GeneralLog) Format() string { return FormatGeneralLog }

// Feed implements auditlogin.Parser.
func (p *GeneralLog) Feed(line auditlogin.Line, emit func(auditlogin.Record)) {
	data := string(trimCR(line.Data))
	rec := auditlogin.Record{Pos: line.Pos}
	if line.Truncated {
		rec.Err, rec.Raw = errors.New("line longer than the reader's limit (cut there)"), []byte(data)
		p.push(rec, false, "", emit)
		return
	}
	ts, thread, cmd, arg, ok := p.split(data)
	if !ok { // headers, continuation lines of multi-line queries
		p.push(rec, false, "", emit)
		return
	}
	switch {
	case cmd == "Connect" && strings.HasPrefix(arg, deniedPrefix):
		user, host, err := deniedUserHost(arg)
		if err != nil {
			rec.Err, rec.Raw = err, []byte(data)
			p.push(rec, false, "", emit)
			return
		}
		// The attempt is this line: the Connect line before it was no login.
		if i, ok := p.pending[thread]; ok {
			p.queue[i-p.base].rec.Event = nil
			p.queue[i-p.base].pending = false
			delete(p.pending, thread)
		}
		ev := p.event(ts, thread, auditlogin.TypeFailed, line.Pos)
		ev.User, ev.PrivUser = auditlogin.Str(user), auditlogin.Str("")
		ev.Host, ev.IP = hostOrIP(host)
		p.tag(ev)
		rec.Event = ev
		p.push(rec, false, "", emit)
	case cmd == "Connect":
		p.resolve(thread)
		m := connectArgument.FindStringSubmatch(arg)
		if m == nil {
			rec.Err, rec.Raw = errors.New("Connect line without user@host"), []byte(data)
			p.push(rec, false, "", emit)
			return
		}
		ev := p.event(ts, thread, auditlogin.TypeSuccess, line.Pos)
		ev.User = auditlogin.Str(m[1])
		ev.PrivUser = auditlogin.Str(m[1])
		if m[3] != "" {
			ev.PrivUser = auditlogin.Str(m[3]) // "as anonymous": the account matched
		}
		ev.Host, ev.IP = hostOrIP(m[2])
		if m[1] == "" {
			ev.User = auditlogin.Null
		}
		p.tag(ev)
		rec.Event = ev
		p.push(rec, true, thread, emit)
	default:
		p.resolve(thread)
		if cmd == "Quit" && p.opt.Logouts {
			ev := p.event(ts, thread, auditlogin.TypeLogout, line.Pos)
			ev.User, ev.PrivUser, ev.Host, ev.IP = auditlogin.Null, auditlogin.Null, auditlogin.Null, auditlogin.Null
			rec.Event = ev
		}
		p.push(rec, false, "", emit)
	}
}

func (p *GeneralLog) tag(ev *auditlogin.Event) {
	if suspicious(ev.User.S) || strings.ContainsAny(ev.User.S, "@'") {
		ev.Tags = append(ev.Tags, auditlogin.TagSuspiciousUser)
	}
}

func (p *GeneralLog) event(ts, thread, typ string, pos auditlogin.Position) *auditlogin.Event {
	return &auditlogin.Event{Timestamp: p.lastTime.UTC(), TS: p.lastTS, Type: typ, MyHost: p.opt.MyHost, Thread: thread,
		Format: FormatGeneralLog, Path: pos.Path, Offset: pos.Offset}
}

// split reads a log line: (timestamp), thread id, command, argument. It
// keeps the last timestamp seen (MariaDB writes it only when it changes).
func (p *GeneralLog) split(s string) (ts, thread, cmd, arg string, ok bool) {
	if m := mysqlGeneralLine.FindStringSubmatch(s); m != nil {
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return "", "", "", "", false
		}
		p.lastTS, p.lastTime = m[1], t
		return m[1], m[2], m[3], m[4], true
	}
	if m := mariadbGeneralLine.FindStringSubmatch(s); m != nil {
		if m[1] != "" {
			t, err := localStamp(m[1], p.opt.Location)
			if err != nil {
				return "", "", "", "", false
			}
			p.lastTS, p.lastTime = m[1], t
		}
		return p.lastTS, m[2], m[3], m[4], true
	}
	return "", "", "", "", false
}

// push queues a record behind unresolved Connects (or emits it), and emits
// every resolved record at the head of the queue.
func (p *GeneralLog) push(rec auditlogin.Record, pending bool, thread string, emit func(auditlogin.Record)) {
	if pending {
		p.pending[thread] = p.base + len(p.queue)
	}
	p.queue = append(p.queue, queued{rec: rec, pending: pending})
	if len(p.queue) > maxGeneralPending {
		// No word on the oldest Connect for this long: it was a login.
		for th, i := range p.pending {
			if i == p.base {
				p.resolve(th)
			}
		}
	}
	p.drain(emit)
}

// resolve marks a thread's held Connect a successful login.
func (p *GeneralLog) resolve(thread string) {
	if i, ok := p.pending[thread]; ok {
		p.queue[i-p.base].pending = false
		delete(p.pending, thread)
	}
}

func (p *GeneralLog) drain(emit func(auditlogin.Record)) {
	n := 0
	for n < len(p.queue) && !p.queue[n].pending {
		emit(p.queue[n].rec)
		n++
	}
	p.queue = p.queue[n:]
	p.base += n
	if len(p.queue) == 0 {
		p.queue = nil
	}
}

// Idle implements auditlogin.Idler: the log has been quiet (10 s by
// default): a denial follows its Connect line at once, or within the
// authentication's delay (PAM's is a few seconds), so a held Connect was a
// login. A denial later than that would add a failed_login after it.
func (p *GeneralLog) Idle(emit func(auditlogin.Record)) { p.Flush(emit) }

// Flush implements auditlogin.Flusher: at the end of a complete file, a
// held Connect was a login.
func (p *GeneralLog) Flush(emit func(auditlogin.Record)) {
	for th := range p.pending {
		p.resolve(th)
	}
	p.drain(emit)
}
