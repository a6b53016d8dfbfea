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

	"github.com/auditlogin/auditlogin/config"
)

// The logs a MariaDB server really writes, followed with format: auto: the
// server_audit log (rotated mid-test), the general log and the error log.
// Each real connection must appear as the expected event in each log that
// records it.
// TestMariaDBLogsEndToEndChangesServerGlobals makes real logins against the
// local MariaDB and reads them from its server_audit log, general log and
// error log, with format auto. It changes the server's globals
// (server_audit_*, general_log*, log_warnings) and puts every one back as it
// found it, also when it fails.
func TestMariaDBLogsEndToEndChangesServerGlobals(t *testing.T) {
	db := mariadb(t)
	defer db.Close()
	ctx := context.Background()
	var errorLog string
	var generalWas int
	var generalFileWas string
	db.QueryRowContext(ctx, "SELECT @@log_error, @@general_log, @@general_log_file").Scan(&errorLog, &generalWas, &generalFileWas)
	if !filepath.IsAbs(errorLog) {
		var datadir string
		db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&datadir)
		errorLog = filepath.Join(datadir, errorLog)
	}
	var warningsWas int
	db.QueryRowContext(ctx, "SELECT @@log_warnings").Scan(&warningsWas)
	dir, err := os.MkdirTemp("", "auditlogin-formats-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777) // the server writes here
	auditPath, generalPath := filepath.Join(dir, "server_audit.log"), filepath.Join(dir, "general.log")

	var installed int
	db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME='SERVER_AUDIT'").Scan(&installed)
	var auditPathWas, auditEventsWas string
	var auditLoggingWas int
	if installed > 0 {
		if err := db.QueryRowContext(ctx, "SELECT @@server_audit_file_path, @@server_audit_events, @@server_audit_logging").Scan(&auditPathWas, &auditEventsWas, &auditLoggingWas); err != nil {
			t.Fatalf("reading server_audit's settings: %v", err)
		}
	}
	if installed == 0 {
		if _, err := db.ExecContext(ctx, "INSTALL SONAME 'server_audit'"); err != nil {
			t.Fatalf("server_audit: %v", err)
		}
	}
	exec1 := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	defer func() { // the server's settings as they were, even after a t.Fatal
		db.ExecContext(ctx, "SET GLOBAL server_audit_logging=OFF")
		if installed == 0 {
			db.ExecContext(ctx, "UNINSTALL SONAME 'server_audit'")
		} else {
			db.ExecContext(ctx, "SET GLOBAL server_audit_file_path=?", auditPathWas)
			db.ExecContext(ctx, "SET GLOBAL server_audit_events=?", auditEventsWas)
			db.ExecContext(ctx, "SET GLOBAL server_audit_logging=?", auditLoggingWas)
		}
		db.ExecContext(ctx, "SET GLOBAL general_log=?", generalWas)
		db.ExecContext(ctx, "SET GLOBAL general_log_file=?", generalFileWas)
		db.ExecContext(ctx, "SET GLOBAL log_warnings=?", warningsWas)
		db.ExecContext(ctx, "DROP USER IF EXISTS 'fmt_e2e'@'%'")
		db.ExecContext(ctx, "DROP USER IF EXISTS 'fmt_e2e'@'localhost'")
		db.ExecContext(ctx, "DROP USER IF EXISTS 'fmt_e2e2'@'%'")
	}()
	exec1("SET GLOBAL server_audit_file_path=?", auditPath)
	exec1("SET GLOBAL server_audit_events='CONNECT'")
	exec1("SET GLOBAL server_audit_logging=ON")
	exec1("SET GLOBAL general_log_file=?", generalPath)
	exec1("SET GLOBAL general_log=ON")
	exec1("SET GLOBAL log_warnings=2") // "Access denied" warnings in the error log
	for _, u := range []string{"'fmt_e2e'@'%'", "'fmt_e2e'@'localhost'", "'fmt_e2e2'@'%'"} {
		db.ExecContext(ctx, "DROP USER IF EXISTS "+u)
		exec1("CREATE USER " + u + " IDENTIFIED BY 'pw'")
	}

	// The agent, on all three files, format auto. The error log holds
	// earlier runs: only events from this run's start on count.
	started := time.Now().Add(-time.Second).Truncate(time.Second)
	out := filepath.Join(dir, "events.ndjson")
	cfg, err := config.LoadYAML([]byte(fmt.Sprintf(`
inputs:
  - paths: [%q, %q]
    format: auto
    timezone: Local
    logouts: false
  - paths: [%q]
    format: auto
    timezone: Local
registry: {path: %q, flush_interval: 50ms}
outputs: {file: {path: %q}}
enrich: {enabled: false}
pipeline: {flush_interval: 20ms}
tail: {scan_interval: 50ms, poll_interval: 10ms, rotate_wait: 300ms}
`, auditPath, generalPath, errorLog, filepath.Join(dir, "registry.json"), out)), nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	agentDone := make(chan error)
	go func() {
		agentDone <- runAgent(actx, cfg, agentOptions{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)})
	}()

	type key struct{ format, what string }
	got := map[key]string{}
	collect := func() {
		data, _ := os.ReadFile(out)
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var ev struct {
				Timestamp                  time.Time `json:"@timestamp"`
				Format, Type, Thread, Host string
				User                       *string
				IP                         *string
			}
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Timestamp.Before(started) {
				continue
			}
			user := "<null>"
			if ev.User != nil {
				user = *ev.User
			}
			what := ""
			switch {
			case user == "fmt_e2e" || user == "root":
				what = user + "#" + ev.Thread
			case user == "<null>":
				what = "probe"
			default:
				what = user
			}
			got[key{ev.Format, what}] = ev.Type
		}
	}
	tcp := func(user, pass string) (int64, error) {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.Timeout = user, pass, "tcp", "127.0.0.1:3306", 5*time.Second
		udb := sql.OpenDB(mustConnector(t, c))
		defer udb.Close()
		var id int64
		err := udb.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id)
		return id, err
	}
	socket := func(args ...string) int64 {
		out, err := exec.Command("mariadb", append(args, "-N", "-e", "SELECT CONNECTION_ID()")...).Output()
		if err != nil {
			t.Fatalf("socket login %v: %v", args, err)
		}
		var id int64
		fmt.Sscan(string(out), &id)
		return id
	}
	okTCP, err := tcp("fmt_e2e", "pw")
	if err != nil {
		t.Fatal(err)
	}
	okSocket := socket("-ufmt_e2e", "-ppw")
	rootSocket := socket("-uroot")
	if _, err := tcp("fmt_e2e2", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	// server_audit rotates itself on request: the agent reads the renamed
	// file to its end. Rotate once the agent follows the file (it has
	// shipped the first login from it), so the rename happens under it.
	firstAudit := key{"mariadb_audit", fmt.Sprintf("fmt_e2e#%d", okTCP)}
	waitUntil(t, "the agent to ship the first server_audit login", func() bool {
		collect()
		return got[firstAudit] != ""
	})
	exec1("SET GLOBAL server_audit_file_rotate_now=ON")
	if _, err := tcp("e2e_nosuch", "x"); err == nil {
		t.Fatal("unknown user accepted")
	}
	if c, err := net.Dial("tcp", "127.0.0.1:3306"); err == nil { // a probe: no handshake
		c.Close()
	}
	if _, err := os.Stat(auditPath + ".1"); err != nil {
		t.Fatalf("server_audit did not rotate: %v", err)
	}

	want := map[key]string{
		{"mariadb_audit", fmt.Sprintf("fmt_e2e#%d", okTCP)}:    "successful_login",
		{"mariadb_audit", fmt.Sprintf("fmt_e2e#%d", okSocket)}: "successful_login",
		{"mariadb_audit", fmt.Sprintf("root#%d", rootSocket)}:  "successful_login",
		{"mariadb_audit", "fmt_e2e2"}:                          "failed_login",
		{"mariadb_audit", "e2e_nosuch"}:                        "failed_login",
		{"mariadb_audit", "probe"}:                             "failed_login",
		{"general_log", fmt.Sprintf("fmt_e2e#%d", okTCP)}:      "successful_login",
		{"general_log", fmt.Sprintf("fmt_e2e#%d", okSocket)}:   "successful_login",
		{"general_log", fmt.Sprintf("root#%d", rootSocket)}:    "successful_login",
		{"general_log", "fmt_e2e2"}:                            "failed_login",
		{"general_log", "e2e_nosuch"}:                          "failed_login",
		{"error_log", "fmt_e2e2"}:                              "failed_login",
		{"error_log", "e2e_nosuch"}:                            "failed_login",
		{"error_log", "probe"}:                                 "failed_login",
	}
	complete := func() bool {
		collect()
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !complete() && time.Now().Before(deadline) {
		// the general log holds a Connect until the connection's next line:
		// any later statement moves it on
		db.ExecContext(ctx, "DO 1")
		time.Sleep(100 * time.Millisecond) // a poll interval, not a wait for a guess
	}
	stop()
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s is %q, want %q", k.format, k.what, got[k], v)
		}
	}
	if t.Failed() {
		for k, v := range got {
			t.Logf("got %s %s: %s", k.format, k.what, v)
		}
	}
}
