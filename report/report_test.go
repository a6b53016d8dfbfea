package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/samples"
)

// sample is the announcement's 11 records as events.
func sample(t testing.TB) []*auditlogin.Event { return samples.Announcement(t) }

func TestAnnouncementFigures(t *testing.T) {
	a := New(Options{})
	for _, ev := range sample(t) {
		a.Add(ev)
	}
	r := a.Report()
	if r.Totals.Connections != 11 || r.Totals.Failed != 3 {
		t.Errorf("totals %+v, want 11 connections, 3 failed", r.Totals)
	}
	if len(r.RootLogins) != 1 || r.RootLogins[0] != (RootLogin{Host: "localhost", IP: "10.0.0.111", Count: 1}) {
		t.Errorf("root logins %+v, want one from localhost/10.0.0.111", r.RootLogins)
	}
	if len(r.Probes) != 1 || r.Probes[0] != (Probe{IP: "10.0.0.1", Count: 1}) {
		t.Errorf("probes %+v, want one from 10.0.0.1", r.Probes)
	}
	acc := map[string]AccountStats{}
	for _, s := range r.Accounts {
		acc[s.User] = s
	}
	if w := acc["web_user"]; w.Logins != 7 || w.DistinctSources != 5 || w.Failures != 0 {
		t.Errorf("web_user %+v, want 7 logins from 5 distinct sources", w)
	}
	if b := acc["backup_user"]; b.Failures != 2 || b.Logins != 0 {
		t.Errorf("backup_user %+v, want 2 failures", b)
	}
	found := false
	for _, s := range r.FailedBySrc {
		if s.Host == "web-32" && s.Count == 2 {
			found = true
		}
	}
	if !found {
		t.Errorf("failed by source %+v: backup_user's 2 failures from web-32 missing", r.FailedBySrc)
	}
	if len(r.Servers) != 1 || r.Servers[0].MyHost != "gromit03" || len(r.Hours) != 2 {
		t.Errorf("servers %+v hours %+v", r.Servers, r.Hours)
	}
}

// A generated fleet: the report's figures match a count kept independently
// while generating.
func TestFleetMatchesIndependentCount(t *testing.T) {
	servers, perServer := 20, 100000
	rng := rand.New(rand.NewPCG(7, 7))
	type userCount struct {
		logins, failures int64
		sources          map[string]bool
	}
	var total, failed, probes, roots int64
	perSrv := map[string][2]int64{}
	users := map[string]*userCount{}
	probeIPs := map[string]int64{}
	a := New(Options{Top: 1000000})
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	names := []string{"app", "api", "etl", "backup", "root", "report", "monitor"}
	for s := 0; s < servers; s++ {
		myhost := fmt.Sprintf("db-%02d", s)
		for i := 0; i < perServer; i++ {
			ev := &auditlogin.Event{Timestamp: base.Add(time.Duration(rng.IntN(7*24*3600)) * time.Second), MyHost: myhost,
				Type: auditlogin.TypeSuccess}
			ip := fmt.Sprintf("10.%d.%d.%d", s, rng.IntN(4), rng.IntN(50))
			ev.IP, ev.Host = auditlogin.Str(ip), auditlogin.Str("h"+ip)
			switch r := rng.IntN(100); {
			case r < 2:
				ev.Type, ev.User, ev.PrivUser, ev.Host = auditlogin.TypeFailed, auditlogin.Null, auditlogin.Null, auditlogin.Null
				probes++
				probeIPs[ip]++
			case r < 15:
				ev.Type, ev.User, ev.PrivUser = auditlogin.TypeFailed, auditlogin.Str(names[rng.IntN(len(names))]), auditlogin.Str("")
			default:
				u := names[rng.IntN(len(names))]
				ev.User, ev.PrivUser = auditlogin.Str(u), auditlogin.Str(u)
			}
			total++
			c := perSrv[myhost]
			c[0]++
			if ev.Type == auditlogin.TypeFailed {
				failed++
				c[1]++
			}
			perSrv[myhost] = c
			if ev.User.Valid {
				uc := users[ev.User.S]
				if uc == nil {
					uc = &userCount{sources: map[string]bool{}}
					users[ev.User.S] = uc
				}
				uc.sources[ip] = true
				if ev.Type == auditlogin.TypeFailed {
					uc.failures++
				} else {
					uc.logins++
					if ev.User.S == "root" {
						roots++
					}
				}
			}
			a.Add(ev)
		}
	}
	r := a.Report()
	if r.Totals.Connections != total || r.Totals.Failed != failed {
		t.Fatalf("totals %+v, independent count %d/%d", r.Totals, total, failed)
	}
	if len(r.Servers) != servers {
		t.Fatalf("%d servers", len(r.Servers))
	}
	for _, s := range r.Servers {
		if c := perSrv[s.MyHost]; s.Connections != c[0] || s.Failed != c[1] {
			t.Errorf("%s: %+v, independent %v", s.MyHost, s.Totals, c)
		}
	}
	var gotProbes, gotRoots, hourSum int64
	for _, p := range r.Probes {
		gotProbes += p.Count
		if probeIPs[p.IP] != p.Count {
			t.Errorf("probes from %s: %d, independent %d", p.IP, p.Count, probeIPs[p.IP])
		}
	}
	for _, x := range r.RootLogins {
		gotRoots += x.Count
	}
	for _, h := range r.Hours {
		hourSum += h.Connections
	}
	if gotProbes != probes || gotRoots != roots || hourSum != total {
		t.Errorf("probes %d/%d, root logins %d/%d, hours sum %d/%d", gotProbes, probes, gotRoots, roots, hourSum, total)
	}
	for _, acc := range r.Accounts {
		uc := users[acc.User]
		if uc == nil || acc.Logins != uc.logins || acc.Failures != uc.failures || acc.DistinctSources != len(uc.sources) {
			t.Errorf("account %s: %+v, independent %+v", acc.User, acc, uc)
		}
	}
	if len(r.Accounts) != len(users) {
		t.Errorf("%d accounts, independent %d", len(r.Accounts), len(users))
	}
}

func TestHostMatches(t *testing.T) {
	for _, c := range []struct {
		pat, host string
		want      bool
	}{
		{"%", "anything", true}, {"localhost", "localhost", true}, {"localhost", "LOCALHOST", true},
		{"10.0.0.%", "10.0.0.87", true}, {"10.0.0.%", "10.0.1.1", false}, {"web-__.example", "web-87.example", true},
		{"web-__.example", "web-8.example", false}, {"%.example.com", "a.b.example.com", true}, {"%", "", false},
		{"a%b%c", "aXXbYYc", true}, {"a%b%c", "aXXbYY", false},
	} {
		if got := HostMatches(c.pat, c.host); got != c.want {
			t.Errorf("HostMatches(%q, %q) = %v", c.pat, c.host, got)
		}
	}
}

func TestStaleAccounts(t *testing.T) {
	end := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	login := func(user, host, ip string, ago time.Duration) *auditlogin.Event {
		return &auditlogin.Event{Timestamp: end.Add(-ago), Type: auditlogin.TypeSuccess, MyHost: "db",
			User: auditlogin.Str(user), PrivUser: auditlogin.Str(user), Host: auditlogin.Str(host), IP: auditlogin.Str(ip)}
	}
	a := New(Options{Until: end, StaleAfter: 7 * 24 * time.Hour, Accounts: []Account{
		{"app", "10.0.0.%"}, {"app", "localhost"}, {"old", "%"}, {"never", "%"}, {"admin", "%"},
	}})
	a.Add(login("app", "web-1", "10.0.0.5", time.Hour))
	a.Add(login("old", "web-1", "10.0.0.5", 30*24*time.Hour))
	a.Add(&auditlogin.Event{Timestamp: end, Type: auditlogin.TypeFailed, MyHost: "db", User: auditlogin.Str("admin"),
		PrivUser: auditlogin.Str(""), Host: auditlogin.Str("x"), IP: auditlogin.Str("1.2.3.4")}) // failures do not count
	r := a.Report()
	var got []string
	for _, s := range r.StaleAccounts {
		last := "never"
		if s.LastLogin != nil {
			last = s.LastLogin.Format("2006-01-02")
		}
		got = append(got, s.User+"@"+s.Host+":"+last)
	}
	want := "admin@%:never,app@localhost:never,never@%:never,old@%:2026-10-26"
	if strings.Join(got, ",") != want {
		t.Fatalf("stale %v\nwant  %s", got, want)
	}
}

func TestRenderFormats(t *testing.T) {
	a := New(Options{Accounts: []Account{{"nobody", "%"}}})
	for _, ev := range sample(t) {
		a.Add(ev)
	}
	hostile := `<script>alert(1)</script>"|x` + "\n" + `y`
	a.Add(&auditlogin.Event{Timestamp: time.Date(2013, 9, 11, 11, 0, 0, 0, time.UTC), Type: auditlogin.TypeFailed, MyHost: "gromit03",
		User: auditlogin.Str(hostile), PrivUser: auditlogin.Str(""), Host: auditlogin.Str("evil"), IP: auditlogin.Str("192.0.2.66")})
	r := a.Report()
	for _, f := range Formats {
		var b bytes.Buffer
		if err := Render(&b, r, f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out := b.String()
		switch f {
		case "json":
			var m map[string]any
			if err := json.Unmarshal(b.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"totals", "accounts", "root_logins", "probes", "stale_accounts"} {
				if _, ok := m[k]; !ok {
					t.Errorf("json: no %s", k)
				}
			}
			st := m["stale_accounts"].([]any)[0].(map[string]any)
			if v, ok := st["last_login"]; !ok || v != nil {
				t.Errorf("json: a never-seen stale account needs last_login null: %v", st)
			}
		case "csv":
			recs, err := csv.NewReader(&b).ReadAll()
			if err != nil {
				t.Fatalf("csv: %v", err)
			}
			if len(recs) < 20 {
				t.Errorf("csv: %d rows", len(recs))
			}
		case "html":
			if strings.Contains(out, "<script>") || !strings.Contains(out, "&lt;script&gt;") {
				t.Error("html: a user name is not escaped")
			}
			if strings.Contains(out, " src=") || strings.Contains(out, " href=") || !strings.Contains(out, "<svg") {
				t.Error("html: must be self-contained with inline SVG")
			}
		case "text", "markdown":
			if strings.Contains(out, "alert(1)</script>\"|x\ny") {
				t.Errorf("%s: a newline in a user name breaks the table", f)
			}
			if !strings.Contains(out, "web_user") && !strings.Contains(out, `web\_user`) {
				t.Errorf("%s: no accounts", f)
			}
		}
	}
	if err := Render(&bytes.Buffer{}, r, "pdf"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour, "1.5d": 36 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if FormatDuration(7*24*time.Hour) != "7d" {
		t.Error(FormatDuration(7 * 24 * time.Hour))
	}
}

func BenchmarkAdd(b *testing.B) {
	evs := sample(b)
	a := New(Options{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.Add(evs[i%len(evs)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAddNewKeys: every event brings a new account, source and hour,
// as a fleet-wide report over months does (BenchmarkAdd updates the
// sample's few existing keys).
func BenchmarkAddNewKeys(b *testing.B) {
	a := New(Options{})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		user := fmt.Sprintf("u%d", i)
		a.Add(&auditlogin.Event{Timestamp: base.Add(time.Duration(i) * time.Hour), Type: auditlogin.TypeSuccess,
			MyHost: fmt.Sprintf("db-%d", i%200), User: auditlogin.Str(user), PrivUser: auditlogin.Str(user),
			Host: auditlogin.Str(fmt.Sprintf("h%d", i)), IP: auditlogin.Str(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// The HTML charts scale (viewBox), have a labelled count axis and day marks,
// draw failures in the failure colour, use a log scale when one source
// dwarfs the rest, cut long labels, and chart root logins and probes too.
func TestHTMLCharts(t *testing.T) {
	a := New(Options{})
	base := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	add := func(at time.Time, typ, user, host, ip string) {
		ev := &auditlogin.Event{Timestamp: at, Type: typ, MyHost: "db", User: auditlogin.Str(user), PrivUser: auditlogin.Str(user),
			Host: auditlogin.Str(host), IP: auditlogin.Str(ip)}
		if user == "" {
			ev.User, ev.PrivUser = auditlogin.Null, auditlogin.Null
		}
		a.Add(ev)
	}
	for i := 0; i < 1000; i++ {
		add(base.Add(time.Duration(i)*10*time.Minute), auditlogin.TypeSuccess, "root", "localhost", "")
	}
	long := strings.Repeat("very-long-client-host-name.", 4) + "example.com"
	add(base.Add(time.Hour), auditlogin.TypeFailed, "app", long, "2001:db8::1")
	add(base.Add(2*time.Hour), auditlogin.TypeFailed, "", "", "10.0.0.9")
	var b bytes.Buffer
	if err := Render(&b, a.Report(), "html"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`viewBox="0 0 900 `, ">connections</text>", ">Nov 26</text>", "(per 6 hours)", "(log scale)",
		"Where root logs in from", "Connections without credentials (probes) by source", "very-long-client-host-name.very-long-cl…",
		"<details>"} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(out, `<svg xmlns="http://www.w3.org/2000/svg" width=`) {
		t.Error("a chart has a fixed width")
	}
	i := strings.Index(out, "Failed logins by account")
	if i < 0 || !strings.Contains(out[i:i+600], `class="fail"`) || strings.Contains(out[i:i+600], `class="ok"`) {
		t.Errorf("failed logins by account not drawn in the failure colour: %.600s", out[i:])
	}
}
