package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

// startedRuns counts the agent's "following files" log lines (written once
// its signal handling is set up).
func startedRuns(t *testing.T, log string) int {
	data, _ := os.ReadFile(log)
	return strings.Count(string(data), `"msg":"following files"`)
}

// committedToEnd reports whether the registry holds the file (by inode) as
// read and committed to size.
func committedToEnd(t *testing.T, registry string, ino uint64, size int64) bool {
	t.Helper()
	data, err := os.ReadFile(registry)
	if err != nil {
		return false
	}
	var r struct {
		Files []struct {
			Ino    uint64 `json:"ino"`
			Offset int64  `json:"offset"`
		} `json:"files"`
	}
	if json.Unmarshal(data, &r) != nil {
		return false
	}
	for _, f := range r.Files {
		if f.Ino == ino && f.Offset >= size {
			return true
		}
	}
	return false
}

// Kafka and Elasticsearch; Elasticsearch down while the log is written and
// rotated by rename, and each rotated file deleted (as logrotate does) as
// soon as the registry has it committed, which only a spool makes possible
// while Elasticsearch is down; kill -9 at random moments while spooling and
// while catching up. In the end Elasticsearch holds each event exactly once
// and Kafka each at least once.
func TestSpoolKill9WithDeletedRotationsLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	bin := agentBinary(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "logins"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	es := estest.New()
	defer es.Close()
	es.Lock()
	es.Down = true
	es.Unlock()

	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit_login.log")
	registry := filepath.Join(dir, "registry.json")
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 30ms}
outputs:
  kafka: {brokers: [%q], topic: logins, retry_initial: 20ms, retry_max: 200ms}
  elasticsearch: {hosts: [%q], retry_initial: 20ms, retry_max: 200ms, flush_interval: 20ms}
pipeline: {batch_size: 64, max_in_flight: 256, shutdown_timeout: 3s}
tail: {scan_interval: 50ms, poll_interval: 10ms, rotate_wait: 300ms}
spool: {max_bytes: 4MiB}
log: {level: info, format: json}
`, logPath, registry, c.ListenAddrs()[0], es.URL)), 0o644)
	start := agentStarter(t, bin, cfgPath, filepath.Join(dir, "agent.log"))
	fail := func(format string, args ...any) {
		t.Helper()
		data, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		if len(data) > 6000 {
			data = data[len(data)-6000:]
		}
		reg, _ := os.ReadFile(registry)
		var files []string
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				files = append(files, fmt.Sprintf("%s (ino %d, %d B)", e.Name(), fi.Sys().(*syscall.Stat_t).Ino, fi.Size()))
			}
		}
		t.Fatalf(format+"\nfiles: %s\nregistry:\n%s\nagent log (end):\n%s", append(args, strings.Join(files, ", "), reg, data)...)
	}

	// The writer: 3000 records, a rename rotation every 600; each rotated
	// file is deleted once the registry has it committed to its end.
	const total, every = 3000, 600
	written := make(chan struct{})
	deleted := make(chan int, total/every)
	go func() {
		defer close(written)
		f, _ := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		for i := 1; i <= total; i++ {
			f.WriteString(pluginRecord(i, "app"))
			if i%every == 0 && i < total {
				f.Close()
				rotated := fmt.Sprintf("%s.%d", logPath, i/every)
				os.Rename(logPath, rotated)
				f, _ = os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				go func(path string, n int) {
					fi, err := os.Stat(path)
					if err != nil {
						return
					}
					ino := fi.Sys().(*syscall.Stat_t).Ino
					deadline := time.Now().Add(60 * time.Second)
					for !committedToEnd(t, registry, ino, fi.Size()) && time.Now().Before(deadline) {
						time.Sleep(20 * time.Millisecond)
					}
					if committedToEnd(t, registry, ino, fi.Size()) {
						os.Remove(path)
						deleted <- n
					}
				}(rotated, i/every)
			}
			if i%20 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		f.Close()
	}()

	kill := func(agent *exec.Cmd) {
		agent.Process.Signal(syscall.SIGKILL)
		agent.Wait()
	}
	kills := 0
	// While Elasticsearch is down: kill -9 at random moments until every
	// record is written and every rotated file deleted.
	for n := 0; ; {
		agent := start()
		time.Sleep(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		kill(agent)
		kills++
	drain:
		for {
			select {
			case <-deleted:
				n++
			default:
				break drain
			}
		}
		select {
		case <-written:
			if n == total/every-1 {
				goto back
			}
		default:
		}
		if kills > 200 {
			fail("after %d restarts, %d of %d rotated files could be deleted: the registry does not move while elasticsearch is down", kills, n, total/every-1)
		}
	}
back:
	if got := es.Count("auditlogin-*"); got != 0 {
		t.Fatalf("elasticsearch holds %d documents while down", got)
	}
	spooledKill := kills
	// Elasticsearch is back: kill -9 twice while it catches up from the spool.
	es.Lock()
	es.Down = false
	es.Unlock()
	for i := 0; i < 2; i++ {
		agent := start()
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		kill(agent)
		kills++
	}
	startedBefore := startedRuns(t, filepath.Join(dir, "agent.log"))
	agent := start()
	waitUntil(t, "the last run to start (signals handled)", func() bool {
		return startedRuns(t, filepath.Join(dir, "agent.log")) > startedBefore
	})
	// Until Elasticsearch holds every event and the spool is empty (what an
	// earlier run delivered but could not acknowledge before its kill is
	// sent again from the spool: Elasticsearch keeps one copy).
	segments := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "spool", "elasticsearch", "*.seg"))
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for (es.Count("auditlogin-*") < total || len(segments()) > 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		t.Errorf("agent did not exit 0: %v", err)
	}

	threads := docThreads(es)
	var wrong []string
	for i := 1; i <= total; i++ {
		if n := threads[fmt.Sprint(i)]; n != 1 {
			wrong = append(wrong, fmt.Sprintf("%d×%d", i, n))
		}
	}
	if len(wrong) > 0 || es.Overwrites() != 0 {
		fail("elasticsearch: %d events not exactly once (%v), %d overwrites", len(wrong), wrong[:min(10, len(wrong))], es.Overwrites())
	}
	keys := map[string]bool{}
	for _, r := range kafkaRecords(t, c.ListenAddrs()[0], "logins", total, 20*time.Second) {
		keys[string(r.Key)] = true
	}
	if len(keys) != total {
		fail("kafka holds %d of %d events", len(keys), total)
	}
	if left := segments(); len(left) != 0 {
		t.Errorf("spool segments left after catching up: %v", left)
	}
	t.Logf("%d events, %d rotated files deleted while elasticsearch was down, %d kills (%d while spooling): elasticsearch exactly once, kafka complete",
		total, total/every-1, kills, spooledKill)
}
