package enrich

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/samples"
)

// sample is the announcement's 11 records as events.
func sample(t testing.TB) []*auditlogin.Event { return samples.Announcement(t) }

func tagged(evs []*auditlogin.Event, tag string) []string {
	var out []string
	for _, e := range evs {
		if e.HasTag(tag) {
			out = append(out, e.Thread)
		}
	}
	return out
}

func run(t *testing.T, cfg Config, evs []*auditlogin.Event) *Enricher {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		e.Enrich(ev)
	}
	return e
}

func TestRulesOnTheAnnouncementSample(t *testing.T) {
	evs := sample(t)
	run(t, Config{NewSource: true}, evs)
	want := map[string]string{
		TagFailed:        "74153869,74153870,74153878", // backup_user twice, the probe
		TagNoCredentials: "74153878",                   // user (null) from 10.0.0.1
		TagRoot:          "74153871",
		TagRemoteRoot:    "74153871", // root from 10.0.0.111: not the socket or loopback
		TagBruteForce:    "",         // two failures are not five
		// each web_user source the first time (87, 11, 40, 3, 12), root's, not the repeats
		TagNewSource: "74153868,74153871,74153872,74153873,74153874,74153877",
	}
	for tag, w := range want {
		if got := strings.Join(tagged(evs, tag), ","); got != w {
			t.Errorf("%s: tagged %q, want %q", tag, got, w)
		}
	}
}

func TestRemoteRoot(t *testing.T) {
	mk := func(host, ip string, ipValid bool) *auditlogin.Event {
		ev := &auditlogin.Event{Type: auditlogin.TypeSuccess, User: auditlogin.Str("root"), PrivUser: auditlogin.Str("root"),
			Host: auditlogin.Str(host), IP: auditlogin.NullString{S: ip, Valid: ipValid}}
		return ev
	}
	cases := []struct {
		ev     *auditlogin.Event
		remote bool
	}{
		{mk("localhost", "", false), false}, // socket
		{mk("localhost", "127.0.0.1", true), false},
		{mk("localhost", "::1", true), false},
		{mk("db-admin", "10.0.0.9", true), true},
		{mk("localhost", "10.0.0.111", true), true}, // the ip decides
	}
	e, _ := New(Config{})
	for i, c := range cases {
		e.Enrich(c.ev)
		if c.ev.HasTag(TagRemoteRoot) != c.remote || !c.ev.HasTag(TagRoot) {
			t.Errorf("case %d: tags %v, remote want %v", i, c.ev.Tags, c.remote)
		}
	}
}

func TestBruteForceByIPAndByUser(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	fail := func(sec int, user, ip string) *auditlogin.Event {
		return &auditlogin.Event{Timestamp: base.Add(time.Duration(sec) * time.Second), Type: auditlogin.TypeFailed,
			MyHost: "db1", User: auditlogin.Str(user), PrivUser: auditlogin.Str(""), Host: auditlogin.Str("h"), IP: auditlogin.Str(ip)}
	}
	e, _ := New(Config{BruteForceThreshold: 3, BruteForceWindow: time.Minute})
	// One ip trying users: the 3rd failure within a minute is brute force.
	byIP := []*auditlogin.Event{fail(0, "a", "192.0.2.1"), fail(10, "b", "192.0.2.1"), fail(20, "c", "192.0.2.1"), fail(25, "d", "192.0.2.1")}
	// One user from many ips.
	byUser := []*auditlogin.Event{fail(0, "admin", "198.51.100.1"), fail(5, "admin", "198.51.100.2"), fail(9, "admin", "198.51.100.3")}
	// Slow: three failures spread over more than the window.
	slow := []*auditlogin.Event{fail(0, "x", "203.0.113.5"), fail(70, "y", "203.0.113.5"), fail(140, "z", "203.0.113.5")}
	for _, evs := range [][]*auditlogin.Event{byIP, byUser, slow} {
		for _, ev := range evs {
			e.Enrich(ev)
		}
	}
	check := func(name string, evs []*auditlogin.Event, want string) {
		var got []string
		for _, ev := range evs {
			if ev.HasTag(TagBruteForce) {
				got = append(got, "x")
			} else {
				got = append(got, "-")
			}
		}
		if strings.Join(got, "") != want {
			t.Errorf("%s: %s, want %s", name, strings.Join(got, ""), want)
		}
	}
	check("by ip", byIP, "--xx")
	check("by user", byUser, "--x")
	check("slow", slow, "---")
}

func TestBruteForceMemoryIsBounded(t *testing.T) {
	e, _ := New(Config{MaxTracked: 1000})
	base := time.Now()
	for i := 0; i < 20000; i++ {
		e.Enrich(&auditlogin.Event{Timestamp: base, Type: auditlogin.TypeFailed, MyHost: "db",
			User: auditlogin.Null, IP: auditlogin.Str("10.9." + string(rune('a'+i%26)) + "." + time.Duration(i).String())})
	}
	if e.fails.len() > 1000 {
		t.Fatalf("tracking %d keys, bound is 1000", e.fails.len())
	}
}

func TestNewSourceIsPersistedAndBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen.json")
	evs := sample(t)
	e := run(t, Config{NewSource: true, SeenPath: path}, evs)
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	// After a restart the same sources are not new any more.
	again := sample(t)
	run(t, Config{NewSource: true, SeenPath: path}, again)
	if got := tagged(again, TagNewSource); len(got) != 0 {
		t.Fatalf("sources tagged new again after a restart: %v", got)
	}
	// Bounded: only the most recently seen are kept.
	e2, _ := New(Config{NewSource: true, MaxSeen: 100})
	base := time.Now()
	for i := 0; i < 1000; i++ {
		e2.Enrich(&auditlogin.Event{Timestamp: base.Add(time.Duration(i) * time.Second), Type: auditlogin.TypeSuccess,
			MyHost: "db", User: auditlogin.Str("u"), PrivUser: auditlogin.Str("u"), IP: auditlogin.Str(time.Duration(i).String())})
	}
	if n := e2.Seen(); n > 100 {
		t.Fatalf("kept %d sources, bound is 100", n)
	}
	// A corrupt file is a clear error.
	os.WriteFile(path, []byte("{"), 0o644)
	if _, err := New(Config{NewSource: true, SeenPath: path}); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Fatalf("corrupt seen file: %v", err)
	}
}

// BenchmarkEnrich is the per-event cost of every rule (compare with
// BenchmarkParseAuditLogin in parser/: enrichment must not halve throughput).
func BenchmarkEnrich(b *testing.B) {
	evs := sample(b)
	e, _ := New(Config{NewSource: true})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ev := *evs[i%len(evs)]
		ev.Tags = ev.Tags[:0]
		e.Enrich(&ev)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEnrichNewSources: every event from a source not seen before, as
// on a fleet with many clients: seen-set insertion and, past MaxSeen,
// trimming are what it measures (BenchmarkEnrich cycles known sources).
func BenchmarkEnrichNewSources(b *testing.B) {
	e, _ := New(Config{NewSource: true, MaxSeen: 10000})
	base := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ev := &auditlogin.Event{Timestamp: base.Add(time.Duration(i) * time.Millisecond), Type: auditlogin.TypeSuccess,
			MyHost: "db", User: auditlogin.Str("app"), PrivUser: auditlogin.Str("app"), Host: auditlogin.Str("h"),
			IP: auditlogin.Str(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))}
		e.Enrich(ev)
		if !ev.HasTag(TagNewSource) {
			b.Fatalf("event %d from a new source not tagged", i)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// A version 1 seen-sources file (keys in clear) is read: its sources are not
// new, other sources are, and it is written back as version 2.
func TestSeenFileVersion1IsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen.json")
	os.WriteFile(path, []byte(`{"version":1,"seen":[{"key":"db\u0000app\u000010.0.0.1","last":1764000000}]}`), 0o640)
	e, err := New(Config{NewSource: true, SeenPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(ip string) *auditlogin.Event {
		return &auditlogin.Event{Timestamp: time.Unix(1764000100, 0), Type: auditlogin.TypeSuccess, MyHost: "db",
			User: auditlogin.Str("app"), PrivUser: auditlogin.Str("app"), IP: auditlogin.Str(ip)}
	}
	known, other := ev("10.0.0.1"), ev("10.0.0.2")
	e.Enrich(known)
	e.Enrich(other)
	if known.HasTag(TagNewSource) || !other.HasTag(TagNewSource) {
		t.Fatalf("known source tags %v, other source tags %v", known.Tags, other.Tags)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"version":2`) || strings.Contains(string(data), "10.0.0.1") {
		t.Fatalf("written back as %s", data)
	}
	e2, err := New(Config{NewSource: true, SeenPath: path})
	if err != nil {
		t.Fatal(err)
	}
	again := ev("10.0.0.2")
	e2.Enrich(again)
	if again.HasTag(TagNewSource) || e2.Seen() != 2 {
		t.Fatalf("after version 2 round trip: tags %v, %d kept", again.Tags, e2.Seen())
	}
	os.WriteFile(path, []byte(`{"version":7}`), 0o640)
	if _, err := New(Config{NewSource: true, SeenPath: path}); err == nil || !strings.Contains(err.Error(), "version 7") {
		t.Fatalf("unknown version: %v", err)
	}
}

// fleetEvents is bench/gen's mix: 200 client hosts with 250 addresses each,
// ten accounts, ~10 % failed logins, 0-40 ms apart. With the default bounds
// the seen-set stays full and turns over (400,000 combinations, 100,000
// kept), and the brute-force table holds tens of thousands of keys.
func fleetEvents(n int) []auditlogin.Event {
	rng := rand.New(rand.NewPCG(1, 42))
	users := []string{"web_user", "web_user", "web_user", "api", "api", "reporting", "backup_user", "etl", "monitor", "root"}
	t := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	evs := make([]auditlogin.Event, n)
	for i := range evs {
		t = t.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
		host := rng.IntN(200)
		user := users[rng.IntN(len(users))]
		ev := auditlogin.Event{Timestamp: t, Type: auditlogin.TypeSuccess, MyHost: "db-00", User: auditlogin.Str(user),
			PrivUser: auditlogin.Str(user), Host: auditlogin.Str(fmt.Sprintf("app-%03d.prod.example.com", host)),
			IP: auditlogin.Str(fmt.Sprintf("10.%d.%d.%d", host/100, host%100, rng.IntN(250)+1))}
		if rng.IntN(10) == 0 {
			ev.Type, ev.PrivUser = auditlogin.TypeFailed, auditlogin.Str("")
		}
		evs[i] = ev
	}
	return evs
}

// BenchmarkEnrichFleet: the default rules and bounds on bench/gen's mix
// (what bench/kafka.sh's default run enriches), events taken in order.
func BenchmarkEnrichFleet(b *testing.B) {
	evs := fleetEvents(1 << 20)
	e, _ := New(Config{NewSource: true})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := &evs[i%len(evs)]
		if i >= len(evs) { // a second lap: later times, as a live run has
			ev.Timestamp = ev.Timestamp.Add(time.Duration(i/len(evs)) * 24 * time.Hour)
		}
		ev.Tags = ev.Tags[:0]
		e.Enrich(ev)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// The brute-force table holds about the keys whose failures are within the
// window, not every key ever seen up to MaxTracked: failures from 50,000
// sources, a few a minute with a 5-minute window, leave a few thousand.
func TestBruteForceTableFollowsTheWindow(t *testing.T) {
	e, _ := New(Config{})
	base := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for i := range 50000 {
		e.Enrich(&auditlogin.Event{Timestamp: base.Add(time.Duration(i) * 200 * time.Millisecond), Type: auditlogin.TypeFailed,
			MyHost: "db", User: auditlogin.Null, IP: auditlogin.Str(fmt.Sprintf("10.%d.%d.1", i/250, i%250))})
	}
	// 5 minutes hold 1,500 failures: pruned at twice what is left, at most
	// about 3,000 keys plus the 1,024 a table starts pruning at.
	if n := e.fails.len(); n > 4500 {
		t.Fatalf("tracking %d keys for 1,500 failures within the window", n)
	}
	if n := len(e.fails.count); n > 4500 {
		t.Fatalf("%d windows allocated", n)
	}
}
