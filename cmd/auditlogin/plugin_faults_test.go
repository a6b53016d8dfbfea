package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/auditlogin/auditlogin/internal/tmpfs"
)

// The plugin under a failing disk or a stuck log target, in the running
// MariaDB (it changes the plugin's globals only; the plugin is uninstalled
// at the end): a FIFO (whose reader could stop) and a path that cannot be
// opened are refused at once and the variable keeps naming the file being
// written; logins never wait; a full disk leaves no broken record, is
// counted and reported once in the error log; skip_users trims names and
// refuses lists longer than it keeps.
func TestPluginFaultsChangeItsGlobals(t *testing.T) {
	db := mariadb(t)
	defer db.Close()
	ctx := context.Background()
	installPlugin(t, db)
	dir, err := os.MkdirTemp("", "auditlogin-plugin-faults-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	logPath := filepath.Join(dir, "audit_login.log")
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_file = ?", logPath); err != nil {
		t.Fatal(err)
	}
	current := func() string {
		var v string
		db.QueryRowContext(ctx, "SELECT @@audit_login_file").Scan(&v)
		return v
	}
	login := func(user string) time.Duration {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.Timeout = user, "x", "tcp", "127.0.0.1:3306", 10*time.Second
		start := time.Now()
		udb := sql.OpenDB(mustConnector(t, c))
		udb.PingContext(ctx) // a failed login is a record too
		udb.Close()
		return time.Since(start)
	}

	// A FIFO with no reader (or a stopped one): refused at once.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_file = ?", fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO was accepted as the log file")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SET GLOBAL audit_login_file to a FIFO hangs (every login would wait with it)")
	}
	// A reader that opens the FIFO and then stops reading: still refused.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_file = ?", fifo); err == nil {
		t.Fatal("a FIFO with a (stopped) reader was accepted")
	}
	r.Close()
	if d := login("plugin_fault_probe"); d > 5*time.Second {
		t.Fatalf("a login took %v after the refused FIFO", d)
	}
	// A path that cannot be opened: refused, the variable unchanged.
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_file = '/nonexistent/dir/x.log'"); err == nil {
		t.Fatal("an unopenable path was accepted")
	}
	if got := current(); got != logPath {
		t.Fatalf("@@audit_login_file is %q after refusals, want the file being written, %q", got, logPath)
	}

	// skip_users: names trimmed; a list longer than kept is refused.
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_skip_users = ' skipme ,  other '"); err != nil {
		t.Fatal(err)
	}
	defer db.ExecContext(ctx, "SET GLOBAL audit_login_skip_users = ''")
	login("skipme")
	login("plugin_fault_marker")
	waitUntil(t, "the marker login's record", func() bool {
		d, _ := os.ReadFile(logPath)
		return strings.Contains(string(d), "plugin_fault_marker")
	})
	if d, _ := os.ReadFile(logPath); strings.Contains(string(d), `"user":"skipme"`) {
		t.Fatal("' skipme ' in audit_login_skip_users did not skip skipme")
	}
	many := strings.TrimSuffix(strings.Repeat("u,", 65), ",")
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_skip_users = ?", many); err == nil {
		t.Fatal("65 names were accepted (64 are kept)")
	}
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_skip_users = ?", strings.Repeat("x", 1100)); err == nil {
		t.Fatal("1100 characters were accepted (1023 are kept)")
	}

	// A full disk: a write fails (maybe short), the next record after space
	// returns starts on a fresh line, and the failure is in the error log.
	var errorLog string
	db.QueryRowContext(ctx, "SELECT @@log_error").Scan(&errorLog)
	if !filepath.IsAbs(errorLog) {
		var datadir string
		db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&datadir)
		errorLog = filepath.Join(datadir, errorLog)
	}
	errBefore, _ := os.ReadFile(errorLog)
	disk := tmpfs.Mount(t, 64<<10)
	full := filepath.Join(disk, "audit_login.log")
	if _, err := db.ExecContext(ctx, "SET GLOBAL audit_login_file = ?", full); err != nil {
		t.Fatal(err)
	}
	defer db.ExecContext(ctx, "SET GLOBAL audit_login_file = ?", logPath) // before the tmpfs goes
	var errs0 int
	db.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='AUDIT_LOGIN_WRITE_ERRORS'").Scan(&errs0)
	login("before_full")
	free := tmpfs.Fill(t, disk, 0)
	// tmpfs counts pages: records fill the log's last page, then one is cut
	// short or refused.
	writeErrors := func() int {
		var n int
		db.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='AUDIT_LOGIN_WRITE_ERRORS'").Scan(&n)
		return n
	}
	for i := 0; i < 200 && writeErrors() <= errs0; i++ {
		login(fmt.Sprintf("fill_%03d_%s", i, strings.Repeat("y", 60)))
	}
	if n := writeErrors(); n <= errs0 {
		t.Fatalf("Audit_login_write_errors %d -> %d on a full disk", errs0, n)
	}
	t.Logf("write errors after the fill: %d (before %d)", writeErrors(), errs0)
	login("lost_while_full")
	free()
	login("after_space")
	waitUntil(t, "the record after space came back", func() bool {
		d, _ := os.ReadFile(full)
		return strings.Contains(string(d), "after_space")
	})
	data, _ := os.ReadFile(full)
	for i, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l == "" {
			continue // the fresh line a repaired boundary may leave
		}
		if !json.Valid([]byte(l)) && !strings.Contains(l, "after_space") {
			continue // the fragment of the failed write, on its own line
		}
		if !json.Valid([]byte(l)) {
			t.Fatalf("line %d glues a record onto a fragment: %q", i+1, l)
		}
	}
	if !strings.Contains(string(data), "\n{\"ts\"") || !strings.HasSuffix(string(data), "\"escaped\":true}\n") {
		t.Fatalf("file after the full disk:\n%s", data)
	}
	waitUntil(t, "the failure in the error log", func() bool {
		after, _ := os.ReadFile(errorLog)
		return len(after) > len(errBefore) && strings.Contains(string(after[len(errBefore):]), "audit_login: writing "+full+" failed")
	})
	after, _ := os.ReadFile(errorLog)
	if n := strings.Count(string(after[len(errBefore):]), "audit_login: writing"); n != 1 {
		t.Errorf("the write failures were reported %d times in the error log, want once (rate-limited)", n)
	}
}
