package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin/internal/tmpfs"
)

// countLines returns the lines of path that contain each of subs.
func countLines(t *testing.T, path string) map[string]int {
	t.Helper()
	data, _ := os.ReadFile(path)
	n := map[string]int{}
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, `"thread":"`); i >= 0 {
			j := strings.IndexByte(l[i+10:], '"')
			n[l[i+10:i+10+j]]++
		}
	}
	return n
}

// SIGHUP reloads: a valid new configuration adds an input to the running
// agent, and nothing committed is shipped again; an invalid one is refused
// and the agent goes on with the old one. No signal kills it.
func TestSIGHUPReloadsAndAddsAnInput(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	out := filepath.Join(dir, "out.ndjson")
	write := func(path string, from, n int) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			f.WriteString(pluginRecord(i, "app"))
		}
		f.Close()
	}
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	config := func(paths ...string) string {
		return fmt.Sprintf(`
inputs: [{paths: [%s], timezone: UTC}]
registry: {path: %q, flush_interval: 50ms}
outputs: {file: {path: %q}}
tail: {scan_interval: 50ms, poll_interval: 10ms}
log: {format: json}
`, `"`+strings.Join(paths, `", "`)+`"`, filepath.Join(dir, "registry.json"), out)
	}
	os.WriteFile(cfgPath, []byte(config(a)), 0o644)
	write(a, 1, 100)
	write(b, 1001, 50)
	cmd, agentLog := startAgentLogged(t, bin, cfgPath, dir)
	waitUntil(t, "the first input shipped", func() bool { return len(countLines(t, out)) == 100 })
	waitUntil(t, "its offset committed", func() bool {
		d, _ := os.ReadFile(filepath.Join(dir, "registry.json"))
		return strings.Contains(string(d), fmt.Sprintf(`"offset": %d`, fileSize(t, a)))
	})

	// An invalid configuration: refused, the agent keeps running.
	os.WriteFile(cfgPath, []byte("inputs: [{paths: [], format: nosuch}]\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the refusal logged", func() bool { return strings.Contains(agentLog(), "new configuration is refused") })
	write(a, 101, 10)
	waitUntil(t, "the old configuration still shipping", func() bool { return len(countLines(t, out)) == 110 })

	// A valid one with a second input.
	os.WriteFile(cfgPath, []byte(config(a, b)), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the added input shipped", func() bool { return len(countLines(t, out)) == 160 })
	write(a, 111, 5)
	waitUntil(t, "the first input still followed", func() bool { return len(countLines(t, out)) == 165 })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent did not exit 0 on SIGTERM: %v\n%s", err, agentLog())
	}
	for th, n := range countLines(t, out) {
		if n != 1 {
			t.Errorf("thread %s shipped %d times: a reload must not send committed work again", th, n)
		}
	}
	if !strings.Contains(agentLog(), "configuration reloaded") {
		t.Errorf("no reload logged:\n%s", agentLog())
	}
}

// startAgentLogged runs `auditlogin run --config cfgPath` with its output in
// dir/agent.log, killed when the test ends; agentLog reads that log.
func startAgentLogged(t *testing.T, bin, cfgPath, dir string) (cmd *exec.Cmd, agentLog func() string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	return cmd, func() string { d, _ := os.ReadFile(filepath.Join(dir, "agent.log")); return string(d) }
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Every signal a service manager sends leaves the commit done: SIGTERM and
// SIGINT stop gracefully, SIGHUP reloads; none exits without committing.
func TestServiceSignalsCommit(t *testing.T) {
	bin := agentBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		dir := t.TempDir()
		a := filepath.Join(dir, "a.log")
		f, _ := os.Create(a)
		for i := 1; i <= 500; i++ {
			f.WriteString(pluginRecord(i, "app"))
		}
		f.Close()
		cfgPath := filepath.Join(dir, "auditlogin.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 1h}
outputs: {file: {path: %q}}
`, a, filepath.Join(dir, "registry.json"), filepath.Join(dir, "out.ndjson"))), 0o644)
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "everything shipped", func() bool { return len(countLines(t, filepath.Join(dir, "out.ndjson"))) == 500 })
		cmd.Process.Signal(sig)
		// With a 1h flush interval, only the stop (or reload) path commits.
		waitUntil(t, "the commit after "+sig.String(), func() bool {
			d, _ := os.ReadFile(filepath.Join(dir, "registry.json"))
			return strings.Contains(string(d), fmt.Sprintf(`"offset": %d`, fileSize(t, a)))
		})
		if sig == syscall.SIGHUP {
			if cmd.ProcessState != nil {
				t.Fatal("SIGHUP ended the agent")
			}
			cmd.Process.Signal(syscall.SIGTERM)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("%v: agent did not exit 0: %v", sig, err)
		}
	}
}

// The registry, the file output and the dead-letter file on a disk that
// fills up: the agent says so once, recovers by itself within seconds of
// space coming back, and leaves no broken line in its output.
func TestDiskFullRecoversWithoutRestart(t *testing.T) {
	bin := agentBinary(t)
	disk := tmpfs.Mount(t, 512<<10)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.log")
	out := filepath.Join(disk, "out.ndjson")
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 100ms}
outputs: {file: {path: %q}}
tail: {scan_interval: 50ms, poll_interval: 10ms}
pipeline: {retry_initial: 50ms, retry_max: 500ms}
log: {format: json}
`, a, filepath.Join(disk, "registry.json"), out)), 0o644)
	write := func(from, n int) {
		f, _ := os.OpenFile(a, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		for i := from; i < from+n; i++ {
			f.WriteString(pluginRecord(i, "app"))
		}
		f.Close()
	}
	write(1, 100)
	cmd, agentLog := startAgentLogged(t, bin, cfgPath, dir)
	waitUntil(t, "the first records shipped", func() bool { return len(countLines(t, out)) == 100 })

	free := tmpfs.Fill(t, disk, 1500)
	write(101, 400) // far more than fits
	waitUntil(t, "the output failing on the full disk", func() bool { return strings.Contains(agentLog(), "no space left on device") })
	time.Sleep(1500 * time.Millisecond) // several commit intervals and retries while full (what is logged, not a wait for a result)
	free()
	waitUntil(t, "every record shipped after space came back", func() bool { return len(countLines(t, out)) >= 500 })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent did not exit 0: %v\n%s", err, agentLog())
	}
	data, _ := os.ReadFile(out)
	for i, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if !json.Valid([]byte(l)) {
			t.Fatalf("line %d of the output is broken: %q", i+1, l)
		}
	}
	for th, n := range countLines(t, out) {
		if n != 1 {
			t.Errorf("thread %s written %d times", th, n)
		}
	}
	// One line per state change, not one per retry or commit interval.
	logs := agentLog()
	if n := strings.Count(logs, "checkpoint not committed"); n > 1 {
		t.Errorf("the commit failure was logged %d times", n)
	}
	if n := strings.Count(logs, "output failing"); n != 1 {
		t.Errorf("the output failure was logged %d times, want once", n)
	}
	if !strings.Contains(logs, "output recovered") {
		t.Errorf("recovery not logged:\n%s", logs)
	}
}

// rootOnly skips a test that needs root (CI runs as root), or fails it
// under AUDITLOGIN_E2E=require.
func rootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
}

// A log file the service user cannot read: check says so, as that user,
// with the field path; run --once fails instead of exiting 0 with nothing.
func TestUnreadableLogIsReported(t *testing.T) {
	rootOnly(t)
	bin := agentBinary(t)
	dir, err := os.MkdirTemp("", "auditlogin-access-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777)
	logPath := filepath.Join(dir, "audit_login.log")
	os.WriteFile(logPath, []byte(pluginRecord(1, "app")), 0o600) // root's, like a log the mysql group was not given
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {file: {path: %q}}
`, logPath, filepath.Join(dir, "registry.json"), filepath.Join(dir, "out.ndjson"))), 0o644)

	out, err := exec.Command(bin, "check", "--config", cfgPath, "--user", "nobody").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "inputs[0].paths: user nobody cannot read "+logPath) {
		t.Fatalf("check --user nobody: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "check", "--config", cfgPath).CombinedOutput(); err != nil || !strings.Contains(string(out), "this user can read every matching file") {
		t.Fatalf("check as root: %v\n%s", err, out)
	}

	run := exec.Command(bin, "run", "--once", "--config", cfgPath)
	run.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = run.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot read 1 file(s): "+logPath) {
		t.Fatalf("run --once as nobody on an unreadable log: %v (want a failure that names the file)\n%s", err, out)
	}
	os.Chmod(logPath, 0o644)
	if out, err := exec.Command(bin, "check", "--config", cfgPath, "--user", "nobody").CombinedOutput(); err != nil {
		t.Fatalf("check --user nobody on a readable log: %v\n%s", err, out)
	}
}

// More followed files than file descriptors (500 files, ulimit -n 128): the
// files are read in turns, every record is shipped, the registry is written,
// and the limit is said once.
func TestMoreFilesThanDescriptors(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	const files, per = 500, 20
	for f := 0; f < files; f++ {
		var b strings.Builder
		for i := 0; i < per; i++ {
			b.WriteString(pluginRecord(f*per+i+1, "app"))
		}
		os.WriteFile(filepath.Join(logs, fmt.Sprintf("db%03d.log", f)), []byte(b.String()), 0o644)
	}
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	out := filepath.Join(dir, "out.ndjson")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {file: {path: %q}}
tail: {scan_interval: 50ms, poll_interval: 10ms}
log: {format: json}
`, filepath.Join(logs, "*.log"), filepath.Join(dir, "registry.json"), out)), 0o644)
	// Following (not --once): files stay open at their end, waiting for
	// more, so 500 of them would need 500 descriptors.
	var logOut strings.Builder
	cmd := exec.Command("bash", "-c", `ulimit -n 128 && exec "$0" run --config "$1"`, bin, cfgPath)
	cmd.Stdout, cmd.Stderr = &logOut, &logOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitUntil(t, "every record shipped", func() bool { return len(countLines(t, out)) == files*per })
	waitUntil(t, "every file in the registry", func() bool {
		reg, _ := os.ReadFile(filepath.Join(dir, "registry.json"))
		return strings.Count(string(reg), `"path"`) == files
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent did not exit 0: %v\n%s", err, logOut.String())
	}
	reg, _ := os.ReadFile(filepath.Join(dir, "registry.json"))
	if n := strings.Count(string(reg), `"path"`); n != files {
		t.Fatalf("registry holds %d files, want %d", n, files)
	}
	if n := strings.Count(logOut.String(), "more files to follow than file descriptors allow"); n != 1 {
		t.Errorf("the descriptor limit was said %d times, want once\n%s", n, logOut.String())
	}
	if strings.Contains(logOut.String(), "too many open files") {
		t.Errorf("ran out of descriptors:\n%s", logOut.String())
	}
}
