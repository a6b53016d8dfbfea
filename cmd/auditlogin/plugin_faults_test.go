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

	"github.com/auditlogin/auditlogin/internal/stallfs"
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
	errorLog := serverErrorLog(t, db)
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

// A log file whose writes stop returning (a hung network mount, made real
// with a FUSE file system that holds writes in the kernel), in the running
// MariaDB; it changes the plugin's globals only (uninstalled at the end).
// Logins never wait longer than audit_login_wait_ms: records queue for the
// plugin's writer thread, and when the queue is full they are dropped,
// counted and reported once in the error log; SET GLOBAL audit_login_file
// (to escape) returns at once; a root connection still gets in. When the
// file system answers again, every record not dropped is written, whole.
func TestPluginStuckLogTargetChangesItsGlobals(t *testing.T) {
	db := mariadb(t)
	defer db.Close()
	ctx := context.Background()
	installPlugin(t, db)
	stall := stallfs.Mount(t)
	stuckPath := filepath.Join(stall.Dir, "audit_login.log")
	dir, err := os.MkdirTemp("", "auditlogin-plugin-stuck-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	escapePath := filepath.Join(dir, "audit_login.log")
	for _, q := range []string{"SET GLOBAL audit_login_file = '" + stuckPath + "'", "SET GLOBAL audit_login_buffer_size = 4096",
		"SET GLOBAL audit_login_wait_ms = 100"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	status := func(name string) int64 {
		var n int64
		db.QueryRowContext(ctx, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?", name).Scan(&n)
		return n
	}
	errorLog := serverErrorLog(t, db)
	errBefore, _ := os.ReadFile(errorLog)
	// A login, bounded: a login that waits on the audit file fails the test
	// instead of hanging it.
	login := func(user string) time.Duration {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.Timeout = user, "x", "tcp", "127.0.0.1:3306", 5*time.Second
		if user == "root" {
			c.Passwd = "" // a successful login: its record is written before the client is let in
		}
		c.ReadTimeout, c.WriteTimeout = 5*time.Second, 5*time.Second
		start := time.Now()
		udb := sql.OpenDB(mustConnector(t, c))
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := udb.PingContext(lctx) // a failed login is a record too
		cancel()
		udb.Close()
		took := time.Since(start)
		if err != nil && !strings.Contains(err.Error(), "Access denied") {
			t.Fatalf("login %s with the log target stuck: %v after %v", user, err, took)
		}
		return took
	}
	login("before_stall")
	waitUntil(t, "the record before the stall", func() bool {
		d, _ := os.ReadFile(filepath.Join(stall.Backing, "audit_login.log"))
		return strings.Contains(string(d), "before_stall")
	})
	written0, dropped0 := status("AUDIT_LOGIN_RECORDS_WRITTEN"), status("AUDIT_LOGIN_RECORDS_DROPPED")

	stall.Stall()
	login("stuck_first")
	if !stall.WaitHeld(1, 10*time.Second) {
		t.Fatal("the plugin's write to the stalled file system was not held")
	}
	// Successful logins (each waits for its record's place in the queue
	// before the client is let in) and failed ones (whose record the
	// server writes after the client has its error).
	const n = 60
	var worst time.Duration
	for i := 0; i < n; i++ {
		user := "root"
		if i%2 == 1 {
			user = fmt.Sprintf("while_stuck_%02d_%s", i, strings.Repeat("z", 80))
		}
		worst = max(worst, login(user))
	}
	t.Logf("%d logins with the log target stuck: the slowest took %v", n, worst)
	if worst > 2*time.Second {
		t.Errorf("a login took %v with the log target stuck (audit_login_wait_ms is 100)", worst)
	}
	// No server thread stays behind waiting on the file.
	waitUntil(t, "every record made queued or dropped", func() bool {
		return status("AUDIT_LOGIN_RECORDS_DROPPED")-dropped0 > 0 &&
			status("AUDIT_LOGIN_SUCCESSFUL_LOGINS")+status("AUDIT_LOGIN_FAILED_LOGINS") > 0
	})
	if q := status("AUDIT_LOGIN_BUFFER_BYTES"); q == 0 || q > 4096 {
		t.Errorf("Audit_login_buffer_bytes %d, want the queue held within audit_login_buffer_size (4096)", q)
	}
	// A root connection gets in, and the way out returns at once.
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = db.ExecContext(sctx, "SET GLOBAL audit_login_file = ?", escapePath)
	cancel()
	if err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("SET GLOBAL audit_login_file with the log target stuck: %v after %v", err, time.Since(start))
	}
	waitUntil(t, "one report of the dropped records in the error log", func() bool {
		after, _ := os.ReadFile(errorLog)
		return len(after) > len(errBefore) && strings.Contains(string(after[len(errBefore):]), "is not taking records")
	})

	stall.Resume()
	login("after_resume")
	waitUntil(t, "the record after the file system answered again", func() bool {
		d, _ := os.ReadFile(escapePath)
		return strings.Contains(string(d), "after_resume")
	})
	written, dropped := status("AUDIT_LOGIN_RECORDS_WRITTEN")-written0, status("AUDIT_LOGIN_RECORDS_DROPPED")-dropped0
	if written+dropped != n+2 || written < 2 {
		t.Errorf("after the stall: %d written + %d dropped, want the %d records made", written, dropped, n+2)
	}
	stuck, _ := os.ReadFile(filepath.Join(stall.Backing, "audit_login.log"))
	escaped, _ := os.ReadFile(escapePath)
	lines := 0
	for _, data := range [][]byte{stuck, escaped} {
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if l == "" {
				continue
			}
			if !json.Valid([]byte(l)) {
				t.Fatalf("a broken line: %q", l)
			}
			lines++
		}
	}
	if int64(lines) != 1+written {
		t.Errorf("%d lines in the two files, want %d (the one before the stall and the %d written after)", lines, 1+written, written)
	}
	if !strings.Contains(string(stuck), "stuck_first") {
		t.Error("the record whose write was held is not in the file it was written to")
	}
	after, _ := os.ReadFile(errorLog)
	if c := strings.Count(string(after[len(errBefore):]), "is not taking records"); c != 1 {
		t.Errorf("the dropped records were reported %d times, want once (at most once a minute)", c)
	}
	t.Logf("after the stall: %d written, %d dropped", written, dropped)
}

// serverErrorLog is the path of the server's error log.
func serverErrorLog(t *testing.T, db *sql.DB) string {
	t.Helper()
	ctx := context.Background()
	var errorLog string
	if err := db.QueryRowContext(ctx, "SELECT @@log_error").Scan(&errorLog); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(errorLog) {
		var datadir string
		db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&datadir)
		errorLog = filepath.Join(datadir, errorLog)
	}
	return errorLog
}
