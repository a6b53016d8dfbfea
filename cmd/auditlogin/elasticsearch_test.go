package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

// docThreads counts the index's documents by their thread (the records'
// numbers in these tests).
func docThreads(es *estest.Server) map[string]int {
	threads := map[string]int{}
	for _, d := range es.Docs("auditlogin-*") {
		var ev struct {
			Thread string `json:"thread"`
		}
		json.Unmarshal(d, &ev)
		threads[ev.Thread]++
	}
	return threads
}

// Kill -9 the agent repeatedly while it ships a stream with rotations into
// an Elasticsearch API that answers 429 to a tenth of the items on their
// first try: at the end the index holds each event exactly once.
func TestElasticsearchExactlyOnceUnderKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	bin := agentBinary(t)
	es := estest.New()
	defer es.Close()
	var mu sync.Mutex
	seen := map[string]bool{}
	es.Lock()
	es.ItemFault = func(_, id string) int {
		mu.Lock()
		defer mu.Unlock()
		first := !seen[id]
		seen[id] = true
		if first && rand.IntN(10) == 0 {
			return 429
		}
		return 0
	}
	es.Unlock()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit_login.log")
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 30ms}
outputs:
  elasticsearch: {hosts: [%q], retry_initial: 20ms, retry_max: 200ms, flush_interval: 20ms}
pipeline: {batch_size: 64, max_in_flight: 256, shutdown_timeout: 3s}
tail: {scan_interval: 50ms, poll_interval: 10ms, rotate_wait: 300ms}
log: {level: info, format: json}
`, logPath, filepath.Join(dir, "registry.json"), es.URL)), 0o644)
	start := agentStarter(t, bin, cfgPath, filepath.Join(dir, "agent.log"))
	w := &chaosWriter{path: logPath}
	w.open(t)
	const total = 2500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			w.f.WriteString(pluginRecord(i, "app"))
			if i%600 == 0 {
				w.rotate(t, i/600)
			}
			if i%10 == 0 {
				time.Sleep(12 * time.Millisecond)
			}
		}
		w.f.Close()
	}()
	kills := 0
	for finished := false; !finished; {
		agent := start()
		time.Sleep(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		select {
		case <-done:
			finished = true
		default:
		}
		if finished {
			deadline := time.Now().Add(30 * time.Second)
			for es.Count("auditlogin-*") < total && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			agent.Process.Signal(syscall.SIGTERM)
			if err := agent.Wait(); err != nil {
				t.Errorf("agent did not exit 0: %v", err)
			}
			break
		}
		agent.Process.Signal(syscall.SIGKILL)
		agent.Wait()
		kills++
	}
	docs := es.Docs("auditlogin-*")
	threads := docThreads(es)
	var missing []int
	for i := 1; i <= total; i++ {
		if threads[fmt.Sprint(i)] != 1 {
			missing = append(missing, i)
		}
	}
	if len(docs) != total || len(missing) > 0 {
		data, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		t.Fatalf("index holds %d documents for %d events; not exactly once: %v\n%s", len(docs), total, missing[:min(10, len(missing))], data)
	}
	if kills < 3 {
		t.Errorf("only %d kills: restarts were not exercised", kills)
	}
	if ops := es.Ops(); ops["index"] != 0 || es.Overwrites() != 0 {
		t.Errorf("bulk actions %v, %d overwrites: exactly once must come from create, not from the server overwriting", ops, es.Overwrites())
	}
	t.Logf("%d events, %d kills, 4 rotations, 429s on a tenth of first tries: each event exactly once", total, kills)
}

// Kafka and Elasticsearch at once; Elasticsearch down for a while: Kafka
// receives every event during the outage (Elasticsearch's share goes to its
// spool), and once it is back Elasticsearch catches up, each event once.
func TestKafkaAndElasticsearchTogether(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "logins"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	es := estest.New()
	defer es.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit_login.log")
	for i := 1; i <= 300; i++ {
		appendTo(t, logPath, pluginRecord(i, "app"))
	}
	cfg, err := config.LoadYAML([]byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q, flush_interval: 30ms}
outputs:
  kafka: {brokers: [%q], topic: logins}
  elasticsearch: {hosts: [%q], retry_initial: 20ms, retry_max: 100ms}
pipeline: {flush_interval: 20ms, batch_size: 50}
tail: {poll_interval: 10ms}
`, logPath, filepath.Join(dir, "registry.json"), c.ListenAddrs()[0], es.URL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(knownFormat, formatNames()); err != nil {
		t.Fatal(err)
	}
	es.Lock()
	es.Down = true
	es.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error)
	go func() {
		agentDone <- runAgent(ctx, cfg, agentOptions{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)})
	}()
	waitUntil(t, "the agent meeting the outage", func() bool { return es.Refused() > 0 })
	for i := 301; i <= 500; i++ {
		appendTo(t, logPath, pluginRecord(i, "app"))
	}
	n := es.Refused()
	waitUntil(t, "more attempts refused after the new records", func() bool { return es.Refused() >= n+2 })
	if got := es.Count("auditlogin-*"); got != 0 {
		t.Fatalf("elasticsearch holds %d documents during its outage", got)
	}
	during := kafkaRecords(t, c.ListenAddrs()[0], "logins", 500, 20*time.Second)
	duringKeys := map[string]bool{}
	for _, r := range during {
		duringKeys[string(r.Key)] = true
	}
	if len(duringKeys) != 500 {
		t.Fatalf("kafka received %d of 500 events while elasticsearch was down", len(duringKeys))
	}
	spooled, _ := filepath.Glob(filepath.Join(dir, "spool", "elasticsearch", "*.seg"))
	if len(spooled) == 0 {
		t.Fatal("no spool segment for elasticsearch during its outage")
	}
	es.Lock()
	es.Down = false
	es.Unlock()
	waitUntil(t, "both outputs hold every event", func() bool { return es.Count("auditlogin-*") == 500 })
	recs := kafkaRecords(t, c.ListenAddrs()[0], "logins", 500, 20*time.Second)
	cancel()
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range recs {
		ids[string(r.Key)] = true
	}
	docs := es.Docs("auditlogin-*")
	if len(ids) != 500 || len(docs) != 500 || es.Overwrites() != 0 {
		t.Fatalf("kafka has %d distinct events, elasticsearch %d (%d overwritten); want 500 each, none overwritten", len(ids), len(docs), es.Overwrites())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "spool", "elasticsearch", "*.seg")); len(left) != 0 {
		t.Fatalf("spool segments left after catching up: %v", left)
	}
	for id := range docs {
		if !ids[id] {
			t.Fatalf("event %s in elasticsearch but not in kafka", id)
		}
	}
}

// victoriaLogs starts VictoriaLogs, a third-party server that accepts the
// Elasticsearch bulk API, if installed.
func victoriaLogs(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("victoria-logs")
	if err != nil {
		if home, _ := os.UserHomeDir(); home != "" {
			if _, e := os.Stat(filepath.Join(home, "go", "bin", "victoria-logs")); e == nil {
				bin, err = filepath.Join(home, "go", "bin", "victoria-logs"), nil
			}
		}
	}
	if err != nil {
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatal("victoria-logs is required (AUDITLOGIN_E2E=require): go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1")
		}
		t.Skip("victoria-logs not installed: go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1")
	}
	port := freePort(t)
	// -retentionPeriod: the sample events are from 2013, older than the default 7 days.
	cmd := exec.Command(bin, "-storageDataPath="+t.TempDir(), fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port), "-loggerLevel=ERROR", "-retentionPeriod=100y")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitUntil(t, "victoria-logs to start", func() bool {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return base
}

// The agent ships into VictoriaLogs through its Elasticsearch bulk API; read
// back with LogsQL, the documents match what was shipped, field by field.
func TestVictoriaLogsIngestsWhatWasShipped(t *testing.T) {
	base := victoriaLogs(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: ["../../examples/audit_login.log"], timezone: UTC}]
registry: {path: %q}
outputs:
  file: {path: %q}
  elasticsearch:
    hosts: ["%s/insert/elasticsearch"]
    headers: {VL-Msg-Field: type, VL-Time-Field: "@timestamp", VL-Stream-Fields: myhost}
log: {level: error}
`, filepath.Join(dir, "r.json"), filepath.Join(dir, "events.ndjson"), base)), 0o644)
	if code, _, errs := runCmd(t, "", "run", "--once", "--config", cfgPath); code != 0 {
		t.Fatalf("run: %s", errs)
	}
	shipped := map[string]map[string]any{}
	data, _ := os.ReadFile(filepath.Join(dir, "events.ndjson"))
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		shipped[m["id"].(string)] = m
	}
	var got []map[string]string
	waitUntil(t, "victoria-logs to return the events", func() bool {
		resp, err := http.Get(base + "/select/logsql/query?query=" + url.QueryEscape("*"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		got = nil
		for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			var m map[string]string
			if json.Unmarshal([]byte(line), &m) == nil {
				got = append(got, m)
			}
		}
		return len(got) == len(shipped)
	})
	// VictoriaLogs flattens nested fields with dots and stores values as
	// strings; null becomes an empty field (absent).
	flatten := func(m map[string]any) map[string]string {
		out := map[string]string{}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, vv := range x {
					walk(strings.TrimPrefix(prefix+"."+k, "."), vv)
				}
			case nil:
			case []any:
				if len(x) > 0 {
					b, _ := json.Marshal(x)
					out[prefix] = string(b)
				}
			case float64:
				out[prefix] = fmt.Sprint(int64(x))
			default:
				out[prefix] = fmt.Sprint(x)
			}
		}
		walk("", m)
		return out
	}
	for _, g := range got {
		want, ok := shipped[g["id"]]
		if !ok {
			t.Fatalf("victoria-logs holds an event that was not shipped: %v", g)
		}
		for k, v := range flatten(want) {
			if k == "@timestamp" || k == "type" { // became _time and _msg
				continue
			}
			if g[k] != v {
				t.Errorf("event %s field %s: victoria-logs has %q, shipped %q", g["id"], k, g[k], v)
			}
		}
		if g["_msg"] != want["type"] {
			t.Errorf("_msg %q, want the type %q", g["_msg"], want["type"])
		}
		wantTime, _ := time.Parse(time.RFC3339, want["@timestamp"].(string))
		if gotTime, err := time.Parse(time.RFC3339Nano, g["_time"]); err != nil || !gotTime.Equal(wantTime) {
			t.Errorf("_time %q, want %s", g["_time"], wantTime)
		}
	}
}
