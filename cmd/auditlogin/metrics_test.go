package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/metrics"
)

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func probe(t *testing.T, addr, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: body is not JSON: %v", path, err)
	}
	return resp.StatusCode, body
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startAgent runs the agent in-process (following) and returns the metrics
// endpoint's address and a stop function.
func startAgent(t *testing.T, yaml string, logw io.Writer) (addr string, stop func()) {
	t.Helper()
	cfg, err := config.LoadYAML([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(knownFormat, formatNames()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runAgent(ctx, cfg, agentOptions{stdout: io.Discard, stderr: io.Discard,
			log:     slog.New(slog.NewJSONHandler(logw, nil)),
			started: func(s *metrics.Server) { got <- s.Addr() }})
	}()
	select {
	case addr = <-got:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("metrics endpoint did not start")
	}
	return addr, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A real run, scraped: the counters are what was shipped.
func TestMetricsMatchWhatWasShipped(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit_login.log")
	f, _ := os.Create(logPath)
	const good, bad = 500, 7
	for i := 1; i <= good; i++ {
		f.WriteString(pluginRecord(i, "app"))
		if i%70 == 0 {
			f.WriteString("garbage line\n")
		}
	}
	f.Close()
	events := filepath.Join(dir, "events.ndjson")
	logs := &syncBuffer{}
	addr, stop := startAgent(t, fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 50ms}
outputs: {file: {path: %q}}
pipeline: {flush_interval: 20ms}
metrics: {listen: "127.0.0.1:0"}
`, logPath, filepath.Join(dir, "registry.json"), events), logs)
	defer stop()
	var m map[string]float64
	waitUntil(t, "everything shipped and committed", func() bool {
		m = scrape(t, addr)
		_, committed := m["auditlogin_registry_commit_age_seconds"] // set just after the registry moved
		return m[`auditlogin_events_shipped_total{output="file"}`] == good &&
			m[fmt.Sprintf(`auditlogin_file_bytes_behind{file=%q}`, logPath)] == 0 && committed
	})
	want := map[string]float64{
		`auditlogin_lines_read_total`:                            good + bad,
		`auditlogin_events_parsed_total`:                         good,
		`auditlogin_parse_failures_total{format="audit_login"}`:  bad,
		`auditlogin_dead_lettered_total`:                         bad,
		`auditlogin_output_errors_total{output="file"}`:          0,
		`auditlogin_output_up{output="file"}`:                    1,
		`auditlogin_batch_duration_seconds_count{output="file"}`: -1, // any, checked below
		`auditlogin_events_in_flight`:                            0,  // all acknowledged
		`auditlogin_in_flight_bytes`:                             0,
		`auditlogin_events_in_flight_max`:                        4 * 512, // the defaults
		`auditlogin_in_flight_bytes_max`:                         8 << 20,
		`auditlogin_reading_blocked_seconds_total`:               -1,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("metric %s missing", k)
		} else if v >= 0 && got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if m[`auditlogin_batch_duration_seconds_count{output="file"}`] < 1 {
		t.Error("batch latency histogram is empty")
	}
	data, _ := os.ReadFile(events)
	if n := strings.Count(string(data), "\n"); n != good {
		t.Errorf("file holds %d events, metrics say %d", n, good)
	}
	found := false
	for k := range m {
		if strings.HasPrefix(k, `auditlogin_build_info{goversion=`) {
			found = true
		}
	}
	age, ok := m["auditlogin_registry_commit_age_seconds"]
	if !found || !ok || age < 0 || age > 5 {
		t.Errorf("build info (found %v) or commit age (present %v, %v) missing or wrong", found, ok, age)
	}
	if code, body := probe(t, addr, "/healthz"); code != 200 || body["status"] != "ok" {
		t.Errorf("/healthz: %d %v", code, body)
	}
	if code, body := probe(t, addr, "/readyz"); code != 200 || body["status"] != "ready" {
		t.Errorf("/readyz: %d %v", code, body)
	}
	// A file that falls behind past max_lag_bytes makes /readyz fail: not
	// here, max_lag_bytes is 64MiB. The endpoint is local: no warning.
	if strings.Contains(logs.String(), "listens beyond this host") {
		t.Error("warned about a loopback address")
	}
}

// /readyz flips to 503 when an output goes down, and back when it recovers.
func TestReadyzFollowsTheOutput(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(1, "logins"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := startBroker()
	logPath := filepath.Join(dir, "audit_login.log")
	os.WriteFile(logPath, []byte(pluginRecord(1, "app")), 0o644)
	addr, stop := startAgent(t, fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 50ms}
outputs: {kafka: {brokers: ["127.0.0.1:%d"], topic: logins, timeout: 1s, retry_initial: 50ms, retry_max: 200ms}}
pipeline: {flush_interval: 20ms}
tail: {poll_interval: 20ms}
metrics: {listen: "127.0.0.1:0"}
`, logPath, filepath.Join(dir, "registry.json"), port), io.Discard)
	defer stop()
	waitUntil(t, "ready", func() bool { code, _ := probe(t, addr, "/readyz"); return code == 200 })
	broker.Close()
	appendTo(t, logPath, pluginRecord(2, "app"))
	var body map[string]any
	waitUntil(t, "not ready while kafka is down", func() bool {
		var code int
		code, body = probe(t, addr, "/readyz")
		return code == 503
	})
	if !strings.Contains(fmt.Sprint(body["problems"]), "output kafka is failing") || body["outputs"].(map[string]any)["kafka"] != "down" {
		t.Errorf("/readyz body: %v", body)
	}
	if m := scrape(t, addr); m[`auditlogin_output_up{output="kafka"}`] != 0 || m[`auditlogin_output_errors_total{output="kafka"}`] < 1 {
		t.Errorf("metrics while down: up=%v errors=%v", m[`auditlogin_output_up{output="kafka"}`], m[`auditlogin_output_errors_total{output="kafka"}`])
	}
	broker = startBroker()
	defer broker.Close()
	waitUntil(t, "ready again", func() bool { code, _ := probe(t, addr, "/readyz"); return code == 200 })
}

func TestMetricsOnAPublicAddressWarns(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	_, stop := startAgent(t, fmt.Sprintf(`
inputs: [{paths: [%q]}]
registry: {path: %q}
outputs: {file: {path: %q}}
metrics: {listen: "0.0.0.0:0"}
`, filepath.Join(dir, "none.log"), filepath.Join(dir, "r.json"), filepath.Join(dir, "e.ndjson")), logs)
	stop()
	if !strings.Contains(logs.String(), "listens beyond this host") {
		t.Fatalf("no warning for 0.0.0.0:\n%s", logs)
	}
}

func appendTo(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(s)
}

func TestDryRunCommitsNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
inputs: [{paths: ["../../examples/audit_login.log", "../../parser/testdata/audit_login/hostile.log"], timezone: UTC}]
registry: {path: %q}
outputs: {file: {path: %q}}
`, filepath.Join(dir, "registry.json"), filepath.Join(dir, "events.ndjson"))), 0o644)
	code, out, errs := runCmd(t, "", "run", "--dry-run", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := strings.Count(out, "\n"); n != 22 {
		t.Fatalf("dry run printed %d events, want 22 (11 samples + 11 hostile)", n)
	}
	if n := strings.Count(errs, "hostile.log:"); n != 5 {
		t.Fatalf("dry run printed %d rejections, want 5:\n%s", n, errs)
	}
	for _, f := range []string{"registry.json", "events.ndjson", "dead-letter.ndjson"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("dry run wrote %s", f)
		}
	}
}
