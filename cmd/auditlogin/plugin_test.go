package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/parser"
)

// installPlugin builds plugin/ and installs it into the running MariaDB as
// auditlogin_e2e; it is uninstalled (and the server checked alive) when the
// test ends.
func installPlugin(t *testing.T, _ *sql.DB) {
	t.Helper()
	ctx := context.Background()
	db := mariadb(t) // its own: the caller's may be closed before the cleanup runs
	if out, err := exec.Command("make", "-C", "../../plugin").CombinedOutput(); err != nil {
		t.Fatalf("make -C plugin: %v\n%s", err, out)
	}
	var pluginDir string
	if err := db.QueryRowContext(ctx, "SELECT @@plugin_dir").Scan(&pluginDir); err != nil {
		t.Fatal(err)
	}
	so, _ := os.ReadFile("../../plugin/audit_login.so")
	target := filepath.Join(pluginDir, "auditlogin_e2e.so")
	if err := os.WriteFile(target, so, 0o644); err != nil {
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatalf("cannot write the plugin into %s (AUDITLOGIN_E2E=require; run as root): %v", pluginDir, err)
		}
		t.Skipf("cannot write the plugin into %s (run as root): %v", pluginDir, err)
	}
	db.ExecContext(ctx, "UNINSTALL SONAME 'auditlogin_e2e'")
	// A server that crashed with the test's plugin loaded keeps it
	// registered (mysql.plugin) without loading it: INSTALL would fail with
	// a duplicate entry. Only the test's own registration is removed.
	var stale int
	db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.plugin WHERE dl = 'auditlogin_e2e.so'").Scan(&stale)
	if stale > 0 {
		t.Logf("removing the test plugin's registration left by an earlier run (the server stopped with it loaded)")
		db.ExecContext(ctx, "DELETE FROM mysql.plugin WHERE dl = 'auditlogin_e2e.so'")
	}
	if _, err := db.ExecContext(ctx, "INSTALL SONAME 'auditlogin_e2e'"); err != nil {
		os.Remove(target)
		t.Fatalf("install: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(ctx, "UNINSTALL SONAME 'auditlogin_e2e'"); err != nil {
			t.Errorf("uninstall: %v", err)
		}
		if err := db.PingContext(ctx); err != nil {
			t.Errorf("the server is not answering after the plugin was unloaded: %v", err)
		}
		db.Close()
		os.Remove(target)
	})
}

// The rebuilt plugin in the running MariaDB: real logins with hostile user
// names, every line valid JSON holding the exact bytes sent, the agent ships
// them correctly, and rotation by rename + audit_login_reopen loses nothing.
func TestPluginEndToEnd(t *testing.T) {
	db := mariadb(t)
	defer db.Close()
	ctx := context.Background()
	installPlugin(t, db)
	// The server writes here as its own user: t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "auditlogin-plugin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	logPath := filepath.Join(dir, "audit_login.log")
	var cfg config.Config
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_file = ?", logPath); err != nil {
		t.Fatal(err)
	}
	db.ExecContext(ctx, "DROP USER IF EXISTS 'auditlogin_e2e'@'%'")
	if _, err := db.ExecContext(ctx, "CREATE USER 'auditlogin_e2e'@'%' IDENTIFIED BY 'pw'"); err != nil {
		t.Fatal(err)
	}
	defer db.ExecContext(ctx, "DROP USER IF EXISTS 'auditlogin_e2e'@'%'")

	// The agent follows the log while the logins happen.
	out := filepath.Join(dir, "events.ndjson")
	cfg, err = config.LoadYAML([]byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: Local}]
registry: {path: %q, flush_interval: 50ms}
outputs: {file: {path: %q}}
pipeline: {flush_interval: 20ms}
tail: {scan_interval: 50ms, poll_interval: 10ms, rotate_wait: 300ms}
`, logPath, filepath.Join(dir, "registry.json"), out)), nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	agentDone := make(chan error)
	go func() {
		agentDone <- runAgent(actx, cfg, agentOptions{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)})
	}()

	connect := func(user, pass string) error {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.Timeout = user, pass, "tcp", "127.0.0.1:3306", 5*time.Second
		udb := sql.OpenDB(mustConnector(t, c))
		defer udb.Close()
		return udb.PingContext(ctx)
	}
	type attempt struct{ user, pass, typ string }
	hostile := []string{`quote"user`, `back\slash`, `x","type":"successful_login","priv_user":"root`, "new\nline", "tab\there"}
	var attempts []attempt
	// occurrences counts the records of user in the log and its rotated copy.
	occurrences := func(user string) int {
		esc, _ := json.Marshal(user) // the plugin escapes these names as JSON does
		n := 0
		for _, f := range []string{logPath + ".1", logPath} {
			data, _ := os.ReadFile(f)
			n += strings.Count(string(data), `"user":`+string(esc))
		}
		return n
	}
	// Each login waits for its record: the server may write a failed
	// attempt's record after the client has its error, so the next
	// attempt's could otherwise come first.
	login := func(a attempt) {
		before := occurrences(a.user)
		err := connect(a.user, a.pass)
		if (err == nil) != (a.typ == auditlogin.TypeSuccess) {
			t.Fatalf("login as %q: %v", a.user, err)
		}
		attempts = append(attempts, a)
		waitUntil(t, fmt.Sprintf("the record of the login as %q", a.user), func() bool { return occurrences(a.user) > before })
	}
	login(attempt{"auditlogin_e2e", "pw", auditlogin.TypeSuccess})
	login(attempt{"auditlogin_e2e", "wrong", auditlogin.TypeFailed})
	for _, u := range hostile {
		login(attempt{u, "x", auditlogin.TypeFailed})
	}
	// A user literally named (null): a string, not the probe's null.
	login(attempt{"(null)", "x", auditlogin.TypeFailed})
	// A root login over the socket, with the command-line client.
	if out, err := exec.Command("mariadb", "-uroot", "-e", "SELECT 1").CombinedOutput(); err != nil {
		t.Fatalf("socket login: %v %s", err, out)
	}
	attempts = append(attempts, attempt{"root", "", auditlogin.TypeSuccess})
	// A TCP connect closed before the handshake: a port probe.
	if c, err := net.Dial("tcp", "127.0.0.1:3306"); err == nil {
		c.Close()
	}
	attempts = append(attempts, attempt{"", "", auditlogin.TypeFailed})

	// Rotate by rename + reopen, mid-test; then more logins.
	waitUntil(t, "the first records", func() bool { fi, err := os.Stat(logPath); return err == nil && fi.Size() > 0 })
	time.Sleep(200 * time.Millisecond)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_reopen = ON"); err != nil {
		t.Fatal(err)
	}
	login(attempt{"auditlogin_e2e", "pw", auditlogin.TypeSuccess})
	login(attempt{"after\"rotation", "x", auditlogin.TypeFailed})
	// The server may write a failed attempt's record after the client has
	// its error: wait for the last one.
	waitUntil(t, "the last record", func() bool {
		data, _ := os.ReadFile(logPath)
		return strings.Contains(string(data), `after\"rotation`)
	})

	// Every line of both files is valid JSON, and the parser gives back the
	// exact user names sent.
	var records []*auditlogin.Event
	for _, f := range []string{logPath + ".1", logPath} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if !json.Valid([]byte(line)) {
				t.Fatalf("%s: not valid JSON: %q", f, line)
			}
			// The marker that tells the agent to decode escapes.
			if !strings.HasSuffix(line, `,"escaped":true}`) {
				t.Fatalf("%s: no \"escaped\":true marker: %q", f, line)
			}
			if strings.Contains(line, `"(null)"`) && !strings.Contains(line, `"user":"(null)"`) {
				t.Fatalf("%s: a missing value written as the string (null), not null: %q", f, line)
			}
		}
		p := parser.NewAuditLogin(parser.Options{})
		auditlogin.ReadLines(strings.NewReader(string(data)), f, 0, true, func(l auditlogin.Line) {
			p.Feed(l, func(r auditlogin.Record) {
				if r.Err != nil {
					t.Fatalf("%s:%d: %v", f, r.Pos.Offset, r.Err)
				}
				if r.Event != nil && !(r.Event.User.Valid && r.Event.User.S == "root" && r.Event.Host.S != "localhost") {
					records = append(records, r.Event) // (the test's own root connections over TCP are left out)
				}
			})
		})
	}
	var mine []*auditlogin.Event
	for _, r := range records {
		if !r.User.Valid || r.User.S != "root" || r.Host.S == "localhost" {
			mine = append(mine, r)
		}
	}
	if len(mine) != len(attempts) {
		var got []string
		for _, r := range mine {
			got = append(got, fmt.Sprintf("%q/%s", r.User.S, r.Type))
		}
		t.Fatalf("%d records for %d attempts: %v", len(mine), len(attempts), got)
	}
	for i, a := range attempts {
		r := mine[i]
		wantUser := auditlogin.Str(a.user)
		if a.user == "" {
			wantUser = auditlogin.Null // no handshake: the plugin writes null
		}
		if r.User != wantUser || r.Type != a.typ {
			t.Errorf("record %d: user %q (valid %v) type %s; sent %q, want %s", i, r.User.S, r.User.Valid, r.Type, a.user, a.typ)
		}
		if a.user == "root" && (r.Host.S != "localhost" || r.PrivUser.S != "root") {
			t.Errorf("socket root login: %+v", r)
		}
	}
	var written int
	db.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='AUDIT_LOGIN_RECORDS_WRITTEN'").Scan(&written)
	if written < len(attempts) {
		t.Errorf("Audit_login_records_written = %d, want at least %d", written, len(attempts))
	}

	// The agent shipped every record of both files, once.
	waitUntil(t, "the agent to ship every record", func() bool {
		data, _ := os.ReadFile(out)
		return strings.Count(string(data), "\n") >= len(records)
	})
	stop()
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	shipped := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Thread string  `json:"thread"`
			User   *string `json:"user"`
		}
		json.Unmarshal([]byte(line), &ev)
		shipped[ev.Thread]++
	}
	for _, r := range records {
		if shipped[r.Thread] != 1 {
			t.Errorf("record of thread %s (user %q) shipped %d times across the rotation", r.Thread, r.User.S, shipped[r.Thread])
		}
	}
	for _, u := range hostile {
		if !strings.Contains(string(data), string(auditlogin.AppendJSONString(nil, u))) {
			t.Errorf("user %q not shipped as sent", u)
		}
	}
}
