package parser

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/auditlogin/auditlogin"
)

func oneEvent(t *testing.T, format, data string) *auditlogin.Event {
	t.Helper()
	var evs []*auditlogin.Event
	for _, r := range feedAll(t, format, []byte(data), time.UTC) {
		if r.Err != nil {
			t.Fatalf("%q rejected: %v", data, r.Err)
		}
		if r.Event != nil {
			evs = append(evs, r.Event)
		}
	}
	if len(evs) != 1 {
		t.Fatalf("%q: %d events", data, len(evs))
	}
	return evs[0]
}

var forgedAuditOp = regexp.MustCompile(`,[^,\s]*,\d+,\d+,[A-Z_]+(,|$)`)

// FuzzMariaDBAuditUser: any user name (server_audit writes it raw) comes
// back exactly, except one holding what looks like the server's own
// ",host,connid,queryid,OPERATION," (documented: that cannot be told apart).
func FuzzMariaDBAuditUser(f *testing.F) {
	for _, s := range []string{"app", "a,b", `a"b`, "", "ü", ",x", "x,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if strings.ContainsAny(user, "\n\r\x00") || forgedAuditOp.MatchString(user+",") {
			t.Skip()
		}
		ev := oneEvent(t, FormatMariaDBAudit, "20261125 10:00:01,db1,"+user+",10.0.0.5,42,0,FAILED_CONNECT,,,1045\n")
		want := auditlogin.Str(user)
		if user == "" {
			want = auditlogin.Null
		}
		if ev.User != want || ev.IP.S != "10.0.0.5" || ev.Thread != "42" || ev.MyHost != "db1" || ev.Type != auditlogin.TypeFailed {
			t.Fatalf("user %q parsed as %+v", user, ev)
		}
	})
}

// FuzzErrorLogUser: the user of an Access denied warning comes back exactly
// (the host is taken from the right).
func FuzzErrorLogUser(f *testing.F) {
	for _, s := range []string{"app", "a'b", "x'@'y", `"`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if strings.ContainsAny(user, "\n\r") {
			t.Skip()
		}
		for _, line := range []string{
			fmt.Sprintf("2026-11-25 10:00:01 42 [Warning] Access denied for user '%s'@'10.0.0.5' (using password: YES)\n", user),
			fmt.Sprintf("2026-11-25T10:00:01.000000Z 42 [Note] [MY-010926] [Server] Access denied for user '%s'@'10.0.0.5' (using password: NO)\n", user),
		} {
			ev := oneEvent(t, FormatErrorLog, line)
			if ev.User.S != user || ev.IP.S != "10.0.0.5" || ev.Thread != "42" {
				t.Fatalf("%q parsed as %+v", line, ev)
			}
		}
	})
}

// FuzzGeneralLogUser: a Connect line's user comes back exactly, unless it
// holds "@" or " on " (the server writes user@host on db unescaped).
func FuzzGeneralLogUser(f *testing.F) {
	for _, s := range []string{"app", "a b", `a"b`, "x'y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if user == "" || strings.ContainsAny(user, "\n\r@") || strings.Contains(user, " on ") || strings.HasPrefix(user, "Access denied") {
			t.Skip()
		}
		ev := oneEvent(t, FormatGeneralLog, "261125 10:00:01\t    42 Connect\t"+user+"@10.0.0.5 on  using TCP/IP\n\t\t    42 Query\tselect 1\n")
		if ev.User.S != user || ev.IP.S != "10.0.0.5" || ev.Type != auditlogin.TypeSuccess {
			t.Fatalf("user %q parsed as %+v", user, ev)
		}
	})
}

func TestGeneralLogHeldConnects(t *testing.T) {
	// A successful Connect is held until its connection's next line, and
	// the lines between keep their order.
	log := "261125 10:00:01\t    1 Connect\tapp@10.0.0.1 on  using TCP/IP\n" +
		"\t\t    2 Connect\tbad@10.0.0.2 on  using TCP/IP\n" +
		"\t\t    2 Connect\tAccess denied for user 'bad'@'10.0.0.2' (using password: YES)\n" +
		"\t\t    1 Query\tselect 1\n"
	recs := feedAll(t, FormatGeneralLog, []byte(log), time.UTC)
	var got []string
	var next int64
	for _, r := range recs {
		if r.Pos.Offset != next {
			t.Fatalf("records out of order: %d after %d", r.Pos.Offset, next)
		}
		next = r.Pos.End
		if r.Event != nil {
			got = append(got, r.Event.User.S+":"+r.Event.Type)
		}
	}
	if strings.Join(got, ",") != "app:successful_login,bad:failed_login" {
		t.Fatalf("got %v", got)
	}
	// Unresolved at the end of a complete file: a login.
	recs = feedAll(t, FormatGeneralLog, []byte("261125 10:00:01\t    1 Connect\tidle@10.0.0.1 on  using TCP/IP\n"), time.UTC)
	if len(recs) != 1 || recs[0].Event == nil || recs[0].Event.Type != auditlogin.TypeSuccess {
		t.Fatalf("held connect at end of file: %+v", recs)
	}
}

// benchFormat feeds the sample lines, which hold whole records, again and
// again: one iteration is the whole sample. It reports events/s and fails
// if the sample gives no event (a benchmark of rejections measures nothing).
func benchFormat(b *testing.B, format string, lines ...string) {
	p, err := New(format, Options{Location: time.UTC, MyHost: "db"})
	if err != nil {
		b.Fatal(err)
	}
	var ls []auditlogin.Line
	var size int
	for _, l := range lines {
		ls = append(ls, auditlogin.Line{Data: []byte(l), Pos: auditlogin.Position{Path: "x", End: int64(len(l) + 1)}})
		size += len(l) + 1
	}
	n := 0
	emit := func(r auditlogin.Record) {
		if r.Event != nil {
			n++
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for _, l := range ls {
			p.Feed(l, emit)
		}
	}
	if n == 0 {
		b.Fatalf("%s: the sample gave no event", format)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N*len(ls))/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkParseMariaDBAudit(b *testing.B) {
	benchFormat(b, FormatMariaDBAudit, "20261125 19:17:15,vm,fmt_u,10.0.0.87,56,0,CONNECT,shop,,0")
}

func BenchmarkParseGeneralLog(b *testing.B) {
	benchFormat(b, FormatGeneralLog, "2026-11-25T10:00:00.123456Z\t   15 Connect\tapp@10.0.0.7 on shop using TCP/IP",
		"2026-11-25T10:00:00.124000Z\t   15 Query\tSELECT 1")
}

func BenchmarkParseErrorLog(b *testing.B) {
	benchFormat(b, FormatErrorLog, "2026-11-25 19:17:15 57 [Warning] Access denied for user 'fmt_u'@'127.0.0.1' (using password: YES)")
}

// FuzzPerconaUser: a user name survives each Percona format's own escaping.
func FuzzPerconaUser(f *testing.F) {
	for _, s := range []string{"app", `a"b`, "a,b", "<x>", "é", `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if user == "" || !utf8.ValidString(user) || strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Skip() // control characters end a record in the CSV and XML formats
		}
		js, _ := json.Marshal(user)
		recs := map[string]string{
			"json": `{"audit_record":{"name":"Connect","record":"1_x","timestamp":"2024-09-03T01:53:33Z","connection_id":"7","status":1045,"user":` + string(js) + `,"priv_user":"","os_login":"","proxy_user":"","host":"","ip":"10.0.0.9","db":""}}` + "\n",
			"csv":  `"Connect","1_x","2014-04-21T12:34:32 UTC","7",1045,"` + strings.ReplaceAll(user, `"`, `""`) + `","","","","","10.0.0.9",""` + "\n",
		}
		// XML 1.0 has no way to write a character outside its Char
		// production (U+FFFE, U+FFFF; encoding/xml writes U+FFFD for them),
		// so the XML case runs only for names XML can carry, and only for
		// records within the parser's size limit (escaped, a name of 3,300
		// quotes is longer: TestPerconaXMLRecordLimit).
		if !strings.ContainsFunc(user, func(r rune) bool { return r == 0xfffe || r == 0xffff }) {
			var xb strings.Builder
			xml.EscapeText(&xb, []byte(user))
			if x := "<AUDIT_RECORD>\n<NAME>Connect</NAME>\n<TIMESTAMP>2014-04-21T12:34:32 UTC</TIMESTAMP>\n<CONNECTION_ID>7</CONNECTION_ID>\n<STATUS>1045</STATUS>\n<USER>" + xb.String() + "</USER>\n<IP>10.0.0.9</IP>\n</AUDIT_RECORD>\n"; len(x) <= maxRecordBytes {
				recs["xml"] = x
			}
		}
		for name, rec := range recs {
			ev := oneEvent(t, FormatPerconaAudit, rec)
			if ev.User.S != user || ev.IP.S != "10.0.0.9" || ev.Thread != "7" || ev.Type != auditlogin.TypeFailed {
				t.Fatalf("%s: %q parsed as user %q", name, user, ev.User.S)
			}
		}
	})
}

// An XML record longer than the parser's limit (a user name of 4,000 quotes,
// 20,000 bytes escaped) is rejected, the error naming the limit, and the
// next record is read.
func TestPerconaXMLRecordLimit(t *testing.T) {
	rec := func(user string) string {
		return "<AUDIT_RECORD>\n<NAME>Connect</NAME>\n<TIMESTAMP>2014-04-21T12:34:32 UTC</TIMESTAMP>\n<CONNECTION_ID>7</CONNECTION_ID>\n<STATUS>1045</STATUS>\n<USER>" + user + "</USER>\n<IP>10.0.0.9</IP>\n</AUDIT_RECORD>\n"
	}
	var errs []error
	var users []string
	for _, r := range feedAll(t, FormatPerconaAudit, []byte(rec(strings.Repeat("&#34;", 4000))+rec("app")), time.UTC) {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
		if r.Event != nil {
			users = append(users, r.Event.User.S)
		}
	}
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), fmt.Sprintf("%d bytes", maxRecordBytes)) {
		t.Errorf("errors %v: want the first to name the %d-byte limit", errs, maxRecordBytes)
	}
	if len(users) != 1 || users[0] != "app" {
		t.Errorf("events after the long record: users %q, want [app]", users)
	}
}

// FuzzEnterpriseUser: braces and quotes in a user name do not break the
// streamed object.
func FuzzEnterpriseUser(f *testing.F) {
	for _, s := range []string{"app", "}", "{", `"}`, "\\", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if user == "" || !utf8.ValidString(user) {
			t.Skip()
		}
		js, _ := json.Marshal(user)
		rec := "[\n{\n  \"timestamp\": \"2019-10-03 15:02:40\",\n  \"class\": \"connection\",\n  \"event\": \"connect\",\n  \"connection_id\": 12,\n" +
			"  \"login\": { \"user\": " + string(js) + ", \"ip\": \"10.0.0.33\" },\n  \"connection_data\": { \"connection_type\": \"tcp/ip\", \"status\": 1045 }\n}\n]\n"
		ev := oneEvent(t, FormatEnterpriseAudit, rec)
		if ev.User.S != user || ev.IP.S != "10.0.0.33" || ev.Thread != "12" {
			t.Fatalf("%q parsed as user %q", user, ev.User.S)
		}
	})
}

func BenchmarkParsePerconaJSON(b *testing.B) {
	benchFormat(b, FormatPerconaAudit, `{"audit_record":{"name":"Connect","record":"6_2024-09-03T01:53:14","timestamp":"2024-09-03T01:53:30Z","connection_id":"991","status":0,"user":"app","priv_user":"app","os_login":"","proxy_user":"","host":"web-1.example","ip":"10.0.0.21","db":"shop"}}`)
}

func BenchmarkParseEnterpriseJSON(b *testing.B) {
	benchFormat(b, FormatEnterpriseAudit, "{", `  "timestamp": "2019-10-03 15:02:32",`, `  "class": "connection",`, `  "event": "connect",`,
		`  "connection_id": 11,`, `  "account": { "user": "root", "host": "localhost" },`,
		`  "login": { "user": "root", "os": "", "ip": "::1", "proxy": "" },`, `  "connection_data": { "connection_type": "ssl", "status": 0, "db": "" }`, "},")
}

// A held Connect is a login once the log has been quiet (Idle).
func TestGeneralLogIdleResolvesHeldConnects(t *testing.T) {
	p := NewGeneralLog(Options{Location: time.UTC})
	var evs []*auditlogin.Event
	emit := func(r auditlogin.Record) {
		if r.Event != nil {
			evs = append(evs, r.Event)
		}
	}
	l := "261125 10:00:01\t    7 Connect\tquiet@10.0.0.1 on  using TCP/IP"
	p.Feed(auditlogin.Line{Data: []byte(l), Pos: auditlogin.Position{End: int64(len(l) + 1)}}, emit)
	if len(evs) != 0 {
		t.Fatal("a Connect line must be held until its connection's next line")
	}
	p.Idle(emit)
	if len(evs) != 1 || evs[0].User.S != "quiet" || evs[0].Type != auditlogin.TypeSuccess {
		t.Fatalf("after Idle: %+v", evs)
	}
}

// lastIndexBefore agrees with strings.LastIndex on strings made of the
// markers' own bytes (where near misses are most frequent).
func TestLastIndexBeforeIsLastIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := `",:ipho`
	for n := 0; n < 20000; n++ {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if n%2 == 1 { // the markers themselves, and their pieces, side by side
			parts := []string{mIP, mHost, mPrivUser, `"`, `","`, `":"`, "ip", "host", "priv_user", "x"}
			b = b[:0]
			for k := rng.IntN(8); k >= 0; k-- {
				b = append(b, parts[rng.IntN(len(parts))]...)
			}
		}
		s := string(b)
		for _, m := range []string{mIP, mHost, mPrivUser, `"`} {
			before := rng.IntN(len(s) + 1)
			if got, want := lastIndexBefore(s, before, m), strings.LastIndex(s[:before], m); got != want {
				t.Fatalf("lastIndexBefore(%q, %d, %q) = %d, want %d", s, before, m, got, want)
			}
		}
	}
}
