package auditlogin

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The JSON string encoder against encoding/json's reading of what it wrote:
// every valid string comes back unchanged, invalid UTF-8 comes back with
// U+FFFD in place of each bad byte, across the 8-byte fast path's edges.
func TestAppendJSONStringRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "\u2028", "\xff", "\xc3", "😀", "/", "<"}
	check := func(s string) {
		t.Helper()
		enc := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("%q encoded as %s: not JSON: %v", s, enc, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if !utf8.ValidString(s) {
			// each invalid byte is its own U+FFFD
			var b strings.Builder
			for i := 0; i < len(s); {
				r, n := utf8.DecodeRuneInString(s[i:])
				if r == utf8.RuneError && n == 1 {
					b.WriteRune(utf8.RuneError)
				} else {
					b.WriteString(s[i : i+n])
				}
				i += n
			}
			want = b.String()
		}
		if back != want {
			t.Fatalf("%q encoded as %s reads back as %q, want %q", s, enc, back, want)
		}
	}
	for n := 0; n < 40; n++ {
		for range 300 {
			var b strings.Builder
			for b.Len() < n {
				if rng.IntN(4) == 0 {
					b.WriteString(alphabet[rng.IntN(len(alphabet))])
				} else {
					b.WriteByte(byte('a' + rng.IntN(26)))
				}
			}
			check(b.String())
		}
	}
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 17; pos++ {
			check(strings.Repeat("x", pos) + string(rune(c)) + strings.Repeat("y", 16-pos))
			check(strings.Repeat("x", pos) + string([]byte{byte(c)}) + strings.Repeat("y", 16-pos))
		}
	}
}

// The hand-written @timestamp equals time.Format's, across years, months,
// days, hours and milliseconds.
func TestAppendTimestampMatchesTimeFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	zones := []*time.Location{time.UTC, time.FixedZone("x", -9*3600-1800), time.FixedZone("y", 14*3600)}
	for range 100000 {
		ts := time.Unix(rng.Int64N(253402300799), rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
		got := string(appendTimestamp(nil, ts))
		want := ts.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got != want {
			t.Fatalf("%v: got %s, want %s", ts, got, want)
		}
	}
}

func TestCanonicalIP(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.87": "10.0.0.87", "10.0.0.03": "10.0.0.3", "010.000.000.001": "10.0.0.1", "0.0.0.0": "0.0.0.0",
		"::1": "::1", "2001:DB8:0:0:0:0:0:1": "2001:db8::1", "::ffff:10.0.0.1": "::ffff:10.0.0.1", "fe80::1%eth0": "fe80::1%eth0",
	} {
		if got, ok := CanonicalIP(in); !ok || got != want {
			t.Errorf("CanonicalIP(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "web-87", "10.0.0", "10.0.0.256", "10.0.0.0003", "10..0.1", "10.0.0.1.", "1.2.3.4.5", " 10.0.0.1", "(null)"} {
		if got, ok := CanonicalIP(in); ok {
			t.Errorf("CanonicalIP(%q) = %q: not an address, want false", in, got)
		}
	}
}

// Normalize keeps the id of the record as written, canonicalizes the ip
// (keeping the original), and turns a non-address into null + invalid_ip.
func TestNormalizeIP(t *testing.T) {
	ev := &Event{TS: "2013-09-11 09:13:51", Type: TypeSuccess, MyHost: "gromit03", Thread: "74153874",
		User: Str("web_user"), PrivUser: Str("web_user"), Host: Str("web-03.localdomain"), IP: Str("10.0.0.03")}
	id := ev.ComputeID()
	ev.Normalize()
	if ev.ID != id || ev.IP != Str("10.0.0.3") || ev.IPOriginal != "10.0.0.03" || len(ev.Tags) != 0 {
		t.Fatalf("normalized to id %s ip %v original %q tags %v; want id %s (of the record as written), 10.0.0.3", ev.ID, ev.IP, ev.IPOriginal, ev.Tags, id)
	}
	if js := string(ev.AppendJSON(nil)); !strings.Contains(js, `"ip":"10.0.0.3","ip_original":"10.0.0.03"`) {
		t.Fatalf("encoded: %s", js)
	}
	bad := &Event{IP: Str("not-an-ip")}
	bad.Normalize()
	if bad.IP.Valid || bad.IPOriginal != "not-an-ip" || !bad.HasTag(TagInvalidIP) {
		t.Fatalf("a non-address became ip %v original %q tags %v", bad.IP, bad.IPOriginal, bad.Tags)
	}
	sock := &Event{IP: Null}
	sock.Normalize()
	if sock.IP.Valid || sock.IPOriginal != "" || len(sock.Tags) != 0 {
		t.Fatalf("a socket login changed: %+v", sock)
	}
}

// The IPv4 fast path agrees with netip on what is canonical.
func TestCanonicalIPv4FastPath(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.0.0.87", "255.255.255.255", "1.2.3.4", "10.0.0.03", "256.0.0.1", "1.2.3", "1.2.3.4.5",
		"01.2.3.4", "1..3.4", "1.2.3.", ".1.2.3", "1.2.3.4a", "", "1.2.3.1000", "00.0.0.0", "::1", "1.2.3.04"} {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is4() && a.String() == s
		if got := canonicalIPv4(s); got != want {
			t.Errorf("canonicalIPv4(%q) = %v, netip says %v", s, got, want)
		}
	}
}

// An event read back from its JSON (a spooled event) encodes to the same
// bytes and keeps what outputs route and key by.
func roundTripEvents() []*Event {
	base := time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC)
	evs := []*Event{
		{Timestamp: base, TS: "2026-11-25 11:00:00", Type: TypeFailed, MyHost: "db", Thread: "7",
			User: Null, PrivUser: Null, Host: Null, IP: Str("10.0.0.3"), IPOriginal: "10.0.0.03",
			Format: "audit_login", Tags: []string{"failed", "no_credentials"}, Path: "/l", Offset: 42},
		{Timestamp: base, TS: "x", Type: TypeSuccess, MyHost: "db", Thread: "8", User: Str(`a"b\c`),
			PrivUser: Str(""), Host: Str("h"), IP: Null, Format: "general_log", Tags: []string{},
			Fields: map[string]any{"env": "prod", "dc": "x", "primary": true, "weight": int64(3), "ratio": 0.5},
			Agent:  &AgentInfo{Hostname: "agent-1", Version: "1.2"}},
		// a client host that is an address, an empty one, a thread that is no number
		{Timestamp: base, TS: "t", Type: TypeSuccess, MyHost: "m", Thread: "abc", User: Str("root"),
			PrivUser: Str("root"), Host: Str("10.1.1.1"), IP: Str("10.1.1.1"), Format: "f", Tags: []string{"root"}},
		{Timestamp: base, TS: "t", Type: TypeLogout, MyHost: "m", Thread: "", User: Str(""),
			PrivUser: Str("app"), Host: Str(""), IP: Str("::1"), Format: "f", Tags: []string{}},
		{Timestamp: base, TS: "t", Type: TypeFailed, MyHost: "m", Thread: "99", User: Str("u"),
			PrivUser: Null, Host: Null, IP: Null, IPOriginal: "bogus", Format: "f", Tags: []string{"invalid_ip"}},
	}
	for _, ev := range evs {
		ev.ID = ev.ComputeID()
	}
	return evs
}

// Every schema carries every field of the event: written in any of them and
// read back, the event is the same, field by field.
func TestDecodeEventRoundTrip(t *testing.T) {
	for _, schema := range []Schema{SchemaAuditlogin, SchemaECS, SchemaBoth} {
		for i, ev := range roundTripEvents() {
			enc := ev.Append(nil, schema)
			if !json.Valid(enc) {
				t.Fatalf("%v %d: invalid JSON %s", schema, i, enc)
			}
			got, err := DecodeEvent(enc)
			if err != nil {
				t.Fatalf("%v %d: %v", schema, i, err)
			}
			if again := got.Append(nil, schema); string(again) != string(enc) {
				t.Fatalf("%v %d: round trip changed the event:\n%s\n%s", schema, i, enc, again)
			}
			got.Encoded = nil
			if !got.Timestamp.Equal(ev.Timestamp) {
				t.Fatalf("%v %d: @timestamp %v, want %v", schema, i, got.Timestamp, ev.Timestamp)
			}
			got.Timestamp = ev.Timestamp // same instant, another *Location
			if !reflect.DeepEqual(got, ev) {
				t.Fatalf("%v %d: decoded\n%+v\nwant\n%+v\nfrom %s", schema, i, got, ev, enc)
			}
			if v, _ := got.Field("myhost"); v != ev.MyHost {
				t.Fatalf("Field(myhost) = %q", v)
			}
		}
	}
	for _, bad := range []string{"", "{", `{"user":"x"}`, `{"user":{"name":1},"event":{"id":"x"}}`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}

// The ECS document of one login, field by field (ECS 8 names and types).
func TestECSLogin(t *testing.T) {
	ev := &Event{Timestamp: time.Date(2013, 9, 11, 7, 11, 47, 0, time.UTC), TS: "2013-09-11 09:11:47",
		Type: TypeSuccess, MyHost: "gromit03", Thread: "74153868", User: Str("web_user"), PrivUser: Str("web_user"),
		Host: Str("web-87.localdomain"), IP: Str("10.0.0.87"), Format: "audit_login", Tags: []string{"new_source"},
		Path: "/var/lib/mysql/audit_login.log", Offset: 0, Agent: &AgentInfo{Hostname: "agent-1", Version: "1.0"},
		Fields: map[string]any{"primary": true}}
	ev.ID = ev.ComputeID()
	want := `{"@timestamp":"2013-09-11T07:11:47.000Z","event":{"kind":"event","category":["authentication","database"],` +
		`"type":["start"],"action":"successful_login","outcome":"success","id":"` + ev.ID + `","module":"auditlogin",` +
		`"dataset":"auditlogin.audit_login"},"user":{"name":"web_user","effective":{"name":"web_user"}},` +
		`"source":{"address":"web-87.localdomain","ip":"10.0.0.87","domain":"web-87.localdomain"},"host":{"name":"gromit03"},` +
		`"service":{"type":"mysql"},"mysql":{"thread_id":74153868},"related":{"user":["web_user"],"ip":["10.0.0.87"],` +
		`"hosts":["web-87.localdomain"]},"tags":["new_source"],"log":{"file":{"path":"/var/lib/mysql/audit_login.log"},` +
		`"offset":0},"agent":{"type":"auditlogin","name":"agent-1","version":"1.0"},"labels":{"primary":true},` +
		`"auditlogin":{"ts":"2013-09-11 09:11:47","format":"audit_login"},"ecs":{"version":"` + ECSVersion + `"}}`
	if got := string(ev.Append(nil, SchemaECS)); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// A failed login with no credentials: failure, no user object, no related user.
	ev = &Event{Type: TypeFailed, MyHost: "m", Thread: "1", User: Null, PrivUser: Null, Host: Null, IP: Str("10.0.0.9"), Tags: []string{}}
	got := string(ev.Append(nil, SchemaECS))
	for _, s := range []string{`"outcome":"failure"`, `"source":{"address":"10.0.0.9","ip":"10.0.0.9"}`, `"related":{"ip":["10.0.0.9"]}`} {
		if !strings.Contains(got, s) {
			t.Errorf("no %s in %s", s, got)
		}
	}
	for _, s := range []string{`"user"`, `"domain"`, `"effective"`} {
		if strings.Contains(got, s) {
			t.Errorf("%s in %s", s, got)
		}
	}
	// both: the seed's fields but user and host, and the ECS ones.
	both := string(ev.Append(nil, SchemaBoth))
	for _, s := range []string{`"type":"failed_login"`, `"myhost":"m"`, `"priv_user":null`, `"ip":"10.0.0.9"`, `"event":{`, `"host":{"name":"m"}`} {
		if !strings.Contains(both, s) {
			t.Errorf("no %s in %s", s, both)
		}
	}
}

func TestParseSchema(t *testing.T) {
	for i, n := range Schemas {
		if s, err := ParseSchema(n); err != nil || int(s) != i || s.String() != n {
			t.Fatalf("%s: %v %v", n, s, err)
		}
	}
	if _, err := ParseSchema("ECS"); err == nil {
		t.Fatal("ECS accepted")
	}
}

// The encoders per schema, on one typical event (go test -bench Append).
func BenchmarkAppend(b *testing.B) {
	ev := roundTripEvents()[1]
	ev.User, ev.Host, ev.IP = Str("web_user"), Str("web-87.localdomain"), Str("10.0.0.87")
	for _, s := range []Schema{SchemaAuditlogin, SchemaECS, SchemaBoth} {
		b.Run(s.String(), func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			for b.Loop() {
				buf = ev.Append(buf[:0], s)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// The ECS encoder's edges, each of which a mutant of its conditions changes.
func TestECSEdges(t *testing.T) {
	if Schema(3).String() != "schema(3)" || SchemaBoth.String() != "both" {
		t.Fatalf("String: %q %q", Schema(3).String(), SchemaBoth.String())
	}
	for s, want := range map[string]bool{"0": true, "9": true, "123456789012345678": true, "1234567890123456789": false,
		"/": false, ":": false, "": false, "1a": false} {
		if _, ok := threadID(s); ok != want {
			t.Errorf("threadID(%q) ok = %v", s, ok)
		}
	}
	enc := func(ev *Event) string {
		if ev.Tags == nil {
			ev.Tags = []string{}
		}
		return string(ev.Append(nil, SchemaECS))
	}
	cases := []struct {
		ev       *Event
		has, not []string
	}{
		{&Event{User: Null, PrivUser: Str(""), IP: Null, Host: Null}, []string{`"priv_user":""`}, []string{`"user"`, `"related"`, `"labels"`, `"source"`}},
		{&Event{User: Str("a"), PrivUser: Str("b"), IP: Null, Host: Null}, []string{`"related":{"user":["a","b"]}`}, nil},
		{&Event{User: Str(""), PrivUser: Str("b"), IP: Null, Host: Null}, []string{`"related":{"user":["b"]}`, `"user":{"name":"","effective":{"name":"b"}}`}, nil},
		{&Event{User: Str("a"), PrivUser: Str("a"), IP: Null, Host: Str("h")}, []string{`"related":{"user":["a"],"hosts":["h"]}`, `"source":{"address":"h","domain":"h"}`}, nil},
		{&Event{User: Null, PrivUser: Null, IP: Str("::1"), Host: Str("::1")}, []string{`"source":{"address":"::1","ip":"::1"}`, `"related":{"ip":["::1"]}`, `"host":"::1"`}, []string{`"domain"`, `"hosts"`}},
		{&Event{User: Null, PrivUser: Null, IP: Null, Host: Str("cafe.de")}, []string{`"domain":"cafe.de"`}, nil},
		{&Event{User: Null, PrivUser: Null, IP: Null, Host: Str("10.0.0.1")}, []string{`"auditlogin":{"ts":"","format":"","thread":"","host":"10.0.0.1"}`}, []string{`"domain"`}},
	}
	for i, c := range cases {
		got := enc(c.ev)
		for _, s := range c.has {
			if !strings.Contains(got, s) {
				t.Errorf("case %d: no %s in %s", i, s, got)
			}
		}
		for _, s := range c.not {
			if strings.Contains(got, s) {
				t.Errorf("case %d: %s in %s", i, s, got)
			}
		}
	}
	// An agent known by name only (another shipper's ECS document) or by
	// version only is still an agent.
	for _, doc := range []string{`{"event":{"id":"x"},"agent":{"name":"n"}}`, `{"event":{"id":"x"},"agent":{"version":"1"}}`} {
		ev, err := DecodeEvent([]byte(doc))
		if err != nil || ev.Agent == nil {
			t.Errorf("%s: agent %+v, %v", doc, ev.Agent, err)
		}
	}
	if ev, _ := DecodeEvent([]byte(`{"event":{"id":"x"},"agent":{}}`)); ev.Agent != nil {
		t.Errorf("an empty agent decoded as %+v", ev.Agent)
	}
}

// Reading a spooled event back, per schema (go test -bench Decode).
func BenchmarkDecodeEvent(b *testing.B) {
	ev := roundTripEvents()[1]
	for _, s := range []Schema{SchemaAuditlogin, SchemaECS} {
		data := ev.Append(nil, s)
		b.Run(s.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := DecodeEvent(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
