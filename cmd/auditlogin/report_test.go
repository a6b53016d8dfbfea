package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

var (
	reportSchemaOnce sync.Once
	reportSch        *jsonschema.Schema
	reportSchErr     error
)

func reportSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	reportSchemaOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		reportSch, reportSchErr = c.Compile("../../docs/report.schema.json")
	})
	if reportSchErr != nil {
		t.Fatal(reportSchErr)
	}
	return reportSch
}

// reportJSON runs `auditlogin report --format json` and decodes the contract.
func reportJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errs := runCmd(t, "", append([]string{"report", "--format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("report exit %d: %s", code, errs)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	// Every JSON report a test makes is held to the documented contract.
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := reportSchema(t).Validate(v); err != nil {
		t.Fatalf("report does not match docs/report.schema.json: %v", err)
	}
	return m
}

func TestReportContractFromRawAndFromNDJSON(t *testing.T) {
	raw := reportJSON(t, "--timezone", "UTC", "../../examples/audit_login.log")
	// The agent's own output of the same file gives the same report.
	dir := t.TempDir()
	var parsed strings.Builder
	code, out, _ := runCmd(t, "", "parse", "--timezone", "UTC", "../../examples/audit_login.log")
	if code != 0 {
		t.Fatal("parse failed")
	}
	parsed.WriteString(out)
	nd := filepath.Join(dir, "events.ndjson")
	os.WriteFile(nd, []byte(parsed.String()), 0o644)
	fromND := reportJSON(t, nd)
	a, _ := json.Marshal(raw)
	b, _ := json.Marshal(fromND)
	if string(a) != string(b) {
		t.Fatalf("raw and NDJSON inputs disagree:\n%s\n%s", a, b)
	}
	totals := raw["totals"].(map[string]any)
	if totals["connections"].(float64) != 11 || totals["failed"].(float64) != 3 {
		t.Fatalf("totals %v", totals)
	}
	for _, k := range []string{"accounts", "root_logins", "probes", "stale_excluded"} {
		if _, ok := raw[k].([]any); !ok {
			t.Errorf("%s is not a list", k)
		}
	}
	// No account list: not checked, which is not "none stale".
	if raw["stale_checked"] != false || raw["stale_accounts"] != nil {
		t.Errorf("without an account list: stale_checked %v, stale_accounts %v; want false and null", raw["stale_checked"], raw["stale_accounts"])
	}
	for k, want := range map[string]float64{"servers": 1, "accounts": 3, "sources": 8, "probe_sources": 1} {
		if totals[k] != want {
			t.Errorf("totals.%s = %v, want %v", k, totals[k], want)
		}
	}
	acc := raw["accounts"].([]any)[0].(map[string]any)
	for _, k := range []string{"user", "logins", "failures", "distinct_sources", "first_seen", "last_seen"} {
		if _, ok := acc[k]; !ok {
			t.Errorf("accounts[] has no %s", k)
		}
	}
	root := raw["root_logins"].([]any)[0].(map[string]any)
	if root["host"] != "localhost" || root["ip"] != "10.0.0.111" || root["count"].(float64) != 1 {
		t.Errorf("root_logins %v", root)
	}
	probe := raw["probes"].([]any)[0].(map[string]any)
	if probe["ip"] != "10.0.0.1" || probe["count"].(float64) != 1 {
		t.Errorf("probes %v", probe)
	}
}

func TestReportStaleAccountsFromAFile(t *testing.T) {
	dir := t.TempDir()
	accounts := filepath.Join(dir, "accounts")
	os.WriteFile(accounts, []byte("# user@host\nweb_user@%\n'backup_user'@'web-32'\nreporting@10.0.0.%\n"), 0o644)
	m := reportJSON(t, "--timezone", "UTC", "--accounts", accounts, "../../examples/audit_login.log")
	var got []string
	for _, s := range m["stale_accounts"].([]any) {
		s := s.(map[string]any)
		got = append(got, fmt.Sprintf("%s@%s:%v", s["user"], s["host"], s["last_login"]))
	}
	// web_user logged in; backup_user only failed; reporting never appears.
	if strings.Join(got, ",") != "backup_user@web-32:<nil>,reporting@10.0.0.%:<nil>" {
		t.Fatalf("stale %v", got)
	}
}

// mariadb connects to the local server as root, or skips (fails under
// AUDITLOGIN_E2E=require).
func mariadb(t *testing.T) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.Timeout = "root", "tcp", "127.0.0.1:3306", 3*time.Second
	db := sql.OpenDB(mustConnector(t, cfg))
	if err := db.Ping(); err != nil {
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatalf("MariaDB is required (AUDITLOGIN_E2E=require) at 127.0.0.1:3306 as root: %v", err)
		}
		t.Skipf("no MariaDB at 127.0.0.1:3306 (start it: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd): %v", err)
	}
	return db
}

func mustConnector(t *testing.T, cfg *mysql.Config) driver.Connector {
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Stale accounts from a live server: the test creates accounts, logs in
// with some of them for real, and reports over the login records of those
// connections (written as the audit_login plugin writes them).
func TestReportStaleAccountsFromMariaDB(t *testing.T) {
	db := mariadb(t)
	defer db.Close()
	ctx := context.Background()
	users := []struct{ user, host string }{
		{"auditlogin_t_active", "%"}, {"auditlogin_t_old", "%"}, {"auditlogin_t_never", "localhost"},
	}
	for _, u := range users {
		db.ExecContext(ctx, fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", u.user, u.host))
		if _, err := db.ExecContext(ctx, fmt.Sprintf("CREATE USER '%s'@'%s' IDENTIFIED BY 'pw-%s'", u.user, u.host, u.user)); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, u := range users {
			db.ExecContext(ctx, fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", u.user, u.host))
		}
	}()
	// Real logins: the connection ids go into the records.
	login := func(user string) int64 {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, "pw-"+user, "tcp", "127.0.0.1:3306"
		udb := sql.OpenDB(mustConnector(t, cfg))
		defer udb.Close()
		var id int64
		if err := udb.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
			t.Fatalf("login as %s: %v", user, err)
		}
		return id
	}
	now := time.Now().UTC()
	activeID, oldID := login("auditlogin_t_active"), login("auditlogin_t_old")
	rec := func(ts time.Time, thread int64, user string) string {
		return fmt.Sprintf(`{"ts":"%s","type":"successful_login","myhost":"vm","thread":"%d","user":"%s","priv_user":"%s","host":"localhost","ip":"127.0.0.1"}`+"\n",
			ts.Format("2006-01-02 15:04:05"), thread, user, user)
	}
	logPath := filepath.Join(t.TempDir(), "audit_login.log")
	os.WriteFile(logPath, []byte(rec(now.Add(-40*24*time.Hour), oldID, "auditlogin_t_old")+rec(now, activeID, "auditlogin_t_active")), 0o644)
	m := reportJSON(t, "--timezone", "UTC", "--mysql-dsn", "root@tcp(127.0.0.1:3306)/", "--stale-after", "7d", logPath)
	stale := map[string]any{}
	for _, s := range m["stale_accounts"].([]any) {
		s := s.(map[string]any)
		if strings.HasPrefix(s["user"].(string), "auditlogin_t_") {
			stale[s["user"].(string)+"@"+s["host"].(string)] = s["last_login"]
		}
	}
	if _, ok := stale["auditlogin_t_active@%"]; ok {
		t.Errorf("an account that logged in now is reported stale: %v", stale)
	}
	if v, ok := stale["auditlogin_t_never@localhost"]; !ok || v != nil {
		t.Errorf("an account that never logged in must be stale with last_login null: %v", stale)
	}
	if v, ok := stale["auditlogin_t_old@%"]; !ok || v == nil {
		t.Errorf("an account last seen 40 days ago must be stale with its last login: %v", stale)
	}
	// System accounts are left out, with why; they are never stale logins.
	excluded := map[string]string{}
	for _, e := range m["stale_excluded"].([]any) {
		e := e.(map[string]any)
		excluded[e["user"].(string)+"@"+e["host"].(string)] = e["reason"].(string)
	}
	for _, s := range m["stale_accounts"].([]any) {
		s := s.(map[string]any)
		if s["user"] == "mariadb.sys" || (s["user"] == "mysql" && s["host"] == "localhost") {
			t.Errorf("system account %s@%s reported stale", s["user"], s["host"])
		}
	}
	if excluded["mariadb.sys@localhost"] == "" {
		t.Errorf("mariadb.sys@localhost is not listed apart: %v", excluded)
	}
	// root@localhost exists on every server and never logged in in this log.
	rootStale := false
	for _, s := range m["stale_accounts"].([]any) {
		s := s.(map[string]any)
		if s["user"] == "root" && s["host"] == "localhost" && s["last_login"] == nil {
			rootStale = true
		}
	}
	if !rootStale {
		t.Errorf("root@localhost (never logged in here) is not among the stale accounts: %v", m["stale_accounts"])
	}
}

// The same events, shipped to Elasticsearch, give the same report through
// --es (aggregations) as from the file.
func TestReportFromElasticsearchMatchesTheFile(t *testing.T) {
	es := estest.New()
	defer es.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
inputs: [{paths: ["../../examples/audit_login.log"], timezone: UTC}]
registry: {path: %q}
outputs: {elasticsearch: {hosts: [%q]}}
log: {level: error}
`, filepath.Join(dir, "r.json"), es.URL)), 0o644)
	if code, _, errs := runCmd(t, "", "run", "--once", "--config", cfg); code != 0 {
		t.Fatalf("run: %s", errs)
	}
	accounts := filepath.Join(dir, "accounts")
	os.WriteFile(accounts, []byte("web_user@%\nbackup_user@web-32\nroot@localhost\nghost@%\n"), 0o644)
	fromFile := reportJSON(t, "--timezone", "UTC", "--accounts", accounts, "../../examples/audit_login.log")
	fromES := reportJSON(t, "--es", es.URL, "--index", "auditlogin-*", "--accounts", accounts)
	for _, k := range []string{"totals", "servers", "hours", "top_sources", "root_logins", "probes", "accounts", "failed_by_account", "failed_by_source", "stale_accounts", "from", "until"} {
		a, _ := json.Marshal(fromFile[k])
		b, _ := json.Marshal(fromES[k])
		if string(a) != string(b) {
			t.Errorf("%s differs:\n file %s\n   es %s", k, a, b)
		}
	}
}

// A user name chosen to be a spreadsheet formula stays text in the CSV (the
// JSON keeps it raw); "not checked" and "none stale" differ in every
// format; --top caps every ranked list; ips sort as numbers.
func TestReportSafeAndHonest(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "audit_login.log")
	var b strings.Builder
	rec := func(typ, user, ip string) {
		priv := user
		if typ == "failed_login" {
			priv = ""
		}
		fmt.Fprintf(&b, `{"ts":"2026-11-25 10:00:00","type":"%s","myhost":"db","thread":"1","user":"%s","priv_user":"%s","host":"h","ip":"%s"}`+"\n", typ, user, priv, ip)
	}
	rec("failed_login", `=HYPERLINK("http://evil.example","x")`, "10.0.0.9")
	for i := 0; i < 30; i++ { // 30 probes from 30 sources, one each: ties sort by ip
		fmt.Fprintf(&b, `{"ts":"2026-11-25 10:00:01","type":"failed_login","myhost":"db","thread":"2","user":"(null)","priv_user":"(null)","host":"(null)","ip":"10.0.0.%d"}`+"\n", 100+i)
	}
	rec("successful_login", "app", "10.0.0.21")
	os.WriteFile(log, []byte(b.String()), 0o644)

	code, csvOut, errs := runCmd(t, "", "report", "--format", "csv", "--timezone", "UTC", log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(csvOut, `'=HYPERLINK(""http://evil.example"",""x"")`) || strings.Contains(csvOut, `,"=HYPERLINK`) {
		t.Fatalf("the formula user name is not neutralised in the CSV:\n%s", csvOut)
	}
	if !strings.Contains(csvOut, "stale_accounts,(not checked)") {
		t.Fatalf("CSV does not say the stale check was not done:\n%s", csvOut)
	}
	m := reportJSON(t, "--timezone", "UTC", "--top", "5", log)
	found := false
	for _, u := range m["failed_by_account"].([]any) {
		found = found || u.(map[string]any)["user"] == `=HYPERLINK("http://evil.example","x")`
	}
	if !found {
		t.Fatalf("JSON must keep the raw user name: %v", m["failed_by_account"])
	}
	probes := m["probes"].([]any)
	if len(probes) != 5 || m["totals"].(map[string]any)["probe_sources"] != 30.0 {
		t.Fatalf("--top 5: %d probes listed, totals %v", len(probes), m["totals"])
	}
	if probes[0].(map[string]any)["ip"] != "10.0.0.100" || probes[1].(map[string]any)["ip"] != "10.0.0.101" {
		t.Fatalf("ips not in numeric order: %v", probes)
	}
	for _, s := range m["failed_by_source"].([]any) {
		s := s.(map[string]any)
		if s["ip"] == "10.0.0.9" && (s["failed"] != 1.0 || s["count"] != 1.0) {
			t.Fatalf("failed_by_source %v", s)
		}
	}
	_, text, _ := runCmd(t, "", "report", "--timezone", "UTC", log)
	if !strings.Contains(text, "Stale accounts: not checked") || !strings.Contains(text, "(top 20 of 30)") {
		t.Fatalf("text report:\n%s", text)
	}
	// An empty account list is checked: none stale, said as such.
	empty := filepath.Join(dir, "accounts")
	os.WriteFile(empty, nil, 0o644)
	m = reportJSON(t, "--timezone", "UTC", "--accounts", empty, log)
	if m["stale_checked"] != true || m["stale_accounts"] == nil || len(m["stale_accounts"].([]any)) != 0 {
		t.Fatalf("an empty account list: stale_checked %v, stale_accounts %v", m["stale_checked"], m["stale_accounts"])
	}
}

// A report that cannot read an input writes nothing (an empty report would
// look complete), leaves -o as it was, and exits non-zero.
func TestReportFailureWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "report.html")
	os.WriteFile(out, []byte("yesterday's report"), 0o644)
	code, stdout, errs := runCmd(t, "", "report", "--format", "html", "-o", out, filepath.Join(dir, "missing.log"))
	if code == 0 || stdout != "" || !strings.Contains(errs, "missing.log") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, errs)
	}
	if data, _ := os.ReadFile(out); string(data) != "yesterday's report" {
		t.Fatalf("-o overwritten by a failed report: %.80q", data)
	}
	code, _, _ = runCmd(t, "", "report", "--format", "html", "-o", out, "../../examples/audit_login.log")
	if data, _ := os.ReadFile(out); code != 0 || !strings.Contains(string(data), "<html") {
		t.Fatalf("a good report not written to -o: exit %d, %.80q", code, data)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".report.html.tmp-*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
}

// A fleet: 200 servers, 5,000 accounts, 50,000 sources. Elasticsearch
// enforces search.max_buckets (65,536) as the real one does; the report
// pages through it and equals the file's report.
func TestReportFromElasticsearchAtFleetScale(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	es := estest.New()
	defer es.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit_login.log")
	var b strings.Builder
	const events, sources, accounts, servers = 60000, 50000, 5000, 200
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for i := 0; i < events; i++ {
		src := i % sources
		user := fmt.Sprintf("acct%04d", i%accounts)
		typ, priv := "successful_login", user
		if i%7 == 0 {
			typ, priv = "failed_login", ""
		}
		host, ip := fmt.Sprintf("client-%05d.example", src), fmt.Sprintf("10.%d.%d.%d", src>>16&255, src>>8&255, src&255)
		switch {
		case i%997 == 0: // a probe
			typ, user, priv, host = "failed_login", "(null)", "(null)", "(null)"
		case i%1009 == 0: // root from the socket
			typ, user, priv, host, ip = "successful_login", "root", "root", "localhost", "(null)"
		}
		fmt.Fprintf(&b, `{"ts":"%s","type":"%s","myhost":"db-%03d","thread":"%d","user":"%s","priv_user":"%s","host":"%s","ip":"%s"}`+"\n",
			base.Add(time.Duration(i)*7*time.Second).Format("2006-01-02 15:04:05"), typ, i%servers, i, user, priv, host, ip)
	}
	os.WriteFile(logPath, []byte(b.String()), 0o644)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {elasticsearch: {hosts: [%q]}}
enrich: {enabled: false}
log: {level: error}
`, logPath, filepath.Join(dir, "r.json"), es.URL)), 0o644)
	start := time.Now()
	if code, _, errs := runCmd(t, "", "run", "--once", "--config", cfg); code != 0 {
		t.Fatalf("run: %s", errs)
	}
	t.Logf("shipped in %v", time.Since(start))
	start = time.Now()
	if n := es.Count("auditlogin-*"); n != events {
		t.Fatalf("elasticsearch holds %d of %d events", n, events)
	}
	// The server enforces search.max_buckets as Elasticsearch does: the
	// nested terms aggregation the report used before it paged (last login
	// per user and host, per user and ip) is refused at this size.
	body := `{"size":0,"aggs":{"users":{"terms":{"field":"user","size":10000},"aggs":{` +
		`"hosts":{"terms":{"field":"host","size":10000}},"ips":{"terms":{"field":"ip","size":10000}}}}}}`
	resp, err := http.Post(es.URL+"/auditlogin-*/_search", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(answer), "too_many_buckets_exception") {
		t.Fatalf("nested terms over %d sources: %d %.200s; want too_many_buckets_exception", sources, resp.StatusCode, answer)
	}
	acctFile := filepath.Join(dir, "accounts")
	os.WriteFile(acctFile, []byte("acct0001@%\nacct4999@client-0%\nroot@localhost\nnobody@%\n"), 0o644)
	fromFile := reportJSON(t, "--timezone", "UTC", "--accounts", acctFile, "--top", "50", logPath)
	t.Logf("file report in %v", time.Since(start))
	start = time.Now()
	fromES := reportJSON(t, "--es", es.URL, "--index", "auditlogin-*", "--accounts", acctFile, "--top", "50")
	t.Logf("elasticsearch report in %v", time.Since(start))
	totals := fromES["totals"].(map[string]any)
	// root is an account too; probes and root logins replace a few sources.
	if totals["servers"] != float64(servers) || totals["accounts"] != float64(accounts+1) || totals["sources"].(float64) < sources-100 {
		t.Fatalf("totals from elasticsearch: %v", totals)
	}
	for _, k := range []string{"totals", "servers", "hours", "top_sources", "root_logins", "probes", "failed_by_account", "failed_by_source", "stale_accounts", "from", "until"} {
		a, _ := json.Marshal(fromFile[k])
		b, _ := json.Marshal(fromES[k])
		if string(a) != string(b) {
			t.Errorf("%s differs:\n file %.600s\n   es %.600s", k, a, b)
		}
	}
}

// report reads Elasticsearch with the client the output is configured with
// (--config: hosts, the password from a file), never with the password on
// the command line.
func TestReportFromElasticsearchWithTheOutputsClient(t *testing.T) {
	es := estest.New()
	defer es.Close()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "es-password")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
inputs: [{paths: ["../../examples/audit_login.log"], timezone: UTC}]
registry: {path: %q}
outputs: {elasticsearch: {hosts: [%q], username: auditor, password_file: %q}}
log: {level: error}
`, filepath.Join(dir, "r.json"), es.URL, pwFile)), 0o644)
	if code, _, errs := runCmd(t, "", "run", "--once", "--config", cfg); code != 0 {
		t.Fatalf("run: %s", errs)
	}
	es.Lock()
	es.Username, es.Password = "auditor", "s3cret"
	es.Unlock()
	if code, _, errs := runCmd(t, "", "report", "--es", es.URL); code == 0 || !strings.Contains(errs, "401") {
		t.Fatalf("without credentials: exit %d, %s", code, errs)
	}
	m := reportJSON(t, "--config", cfg)
	if m["totals"].(map[string]any)["connections"] != 11.0 {
		t.Fatalf("report through the output's client: %v", m["totals"])
	}
}

// The schema is strict: an unknown key, or "not checked" with a list, fail.
func TestReportSchemaIsStrict(t *testing.T) {
	_, out, _ := runCmd(t, "", "report", "--format", "json", "--timezone", "UTC", "../../examples/audit_login.log")
	for _, mutate := range []func(m map[string]any){
		func(m map[string]any) { m["extra"] = 1 },
		func(m map[string]any) { m["stale_accounts"] = []any{} },
		func(m map[string]any) { delete(m["totals"].(map[string]any), "servers") },
	} {
		var m map[string]any
		json.Unmarshal([]byte(out), &m)
		mutate(m)
		data, _ := json.Marshal(m)
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(string(data)))
		if reportSchema(t).Validate(v) == nil {
			t.Errorf("schema accepts %s", data[:min(len(data), 200)])
		}
	}
}
