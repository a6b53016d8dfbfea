package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/auditlogin/auditlogin/config"
)

// kafkaRecords reads every record of topic from the start, waiting until
// want arrived or timeout passed.
func kafkaRecords(t *testing.T, addr, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Until want distinct events (by key) have arrived: duplicates (which
	// at-least-once allows) do not count towards it. Then what else is
	// there, so that callers see every copy.
	var recs []*kgo.Record
	keys := map[string]bool{}
	for len(keys) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { recs = append(recs, r); keys[string(r.Key)] = true })
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	cl.PollFetches(ctx2).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	return recs
}

func withoutAgent(t *testing.T, v []byte) string {
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatalf("not JSON: %s", v)
	}
	delete(m, "agent")
	b, _ := json.Marshal(m)
	return string(b)
}

// The agent ships the sample logs and a generated 200k-record file into a
// 3-partition broker; consumed back, the messages are record for record what
// `auditlogin parse` makes of the same files.
func TestKafkaShipsEveryRecord(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "mysql-logins"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	big := filepath.Join(dir, "audit_login.log")
	f, _ := os.Create(big)
	for i := 1; i <= 200000; i++ {
		user := "app"
		if i%1000 == 0 {
			user = "x\"y\\z"
		}
		f.WriteString(pluginRecord(i, user))
	}
	f.Close()
	sample, _ := filepath.Abs("../../examples/audit_login.log")
	cfg, err := config.LoadYAML([]byte(fmt.Sprintf(`
inputs:
  - paths: [%q, %q]
    timezone: UTC
registry: {path: %q}
outputs:
  kafka: {brokers: [%q], topic: mysql-logins, compression: lz4}
enrich: {enabled: false}  # compared with parse, which does not enrich
`, big, sample, filepath.Join(dir, "registry.json"), c.ListenAddrs()[0])), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(knownFormat, formatNames()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := runAgent(context.Background(), cfg, agentOptions{once: true, stdout: io.Discard, log: log}); err != nil {
		t.Fatal(err)
	}
	const total = 200000 + 11
	recs := kafkaRecords(t, c.ListenAddrs()[0], "mysql-logins", total, 60*time.Second)
	if len(recs) != total {
		t.Fatalf("consumed %d messages, want %d", len(recs), total)
	}
	var parsed bytes.Buffer
	if code := run([]string{"parse", "--timezone", "UTC", big, sample}, nil, &parsed, io.Discard); code != 0 {
		t.Fatalf("parse exit %d", code)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(parsed.String()), "\n") {
		var ev struct {
			ID string `json:"id"`
		}
		json.Unmarshal([]byte(line), &ev)
		want[ev.ID] = withoutAgent(t, []byte(line))
	}
	if len(want) != total {
		t.Fatalf("parse gave %d distinct events", len(want))
	}
	for _, r := range recs {
		w, ok := want[string(r.Key)]
		if !ok {
			t.Fatalf("message with unknown key %s", r.Key)
		}
		if got := withoutAgent(t, r.Value); got != w {
			t.Fatalf("message %s differs from parse:\n got %s\nwant %s", r.Key, got, w)
		}
		delete(want, string(r.Key))
	}
	if len(want) != 0 {
		t.Fatalf("%d records never arrived", len(want))
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The broker stops mid-stream; the log keeps being written and rotated; the
// agent is killed with SIGKILL during the outage and started again; then the
// broker comes back on the same port with its data. Nothing is lost, and
// duplicates are bounded by what could be in flight.
func TestKafkaOutageAndKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	bin := agentBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	dataDir := filepath.Join(dir, "kfake")
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dataDir), kfake.SeedTopics(3, "logins"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := startBroker()
	logPath := filepath.Join(dir, "audit_login.log")
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	const maxInFlight, batch = 256, 64
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs:
  - paths: [%q]
    timezone: UTC
registry: {path: %q, flush_interval: 50ms}
outputs:
  kafka: {brokers: ["127.0.0.1:%d"], topic: logins, timeout: 1s, retry_initial: 50ms, retry_max: 300ms}
pipeline: {batch_size: %d, max_in_flight: %d, flush_interval: 20ms, shutdown_timeout: 3s}
tail: {scan_interval: 50ms, poll_interval: 10ms, rotate_wait: 300ms}
log: {level: info, format: json}
`, logPath, filepath.Join(dir, "registry.json"), port, batch, maxInFlight)), 0o644)
	agentLog, _ := os.Create(filepath.Join(dir, "agent.log"))
	defer agentLog.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = io.Discard, agentLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	w := &chaosWriter{path: logPath}
	w.open(t)
	next := 1
	write := func(n int) {
		for i := 0; i < n; i++ {
			w.f.WriteString(pluginRecord(next, "app"))
			next++
		}
	}
	agent := start()
	write(500)
	if got := len(kafkaRecords(t, fmt.Sprintf("127.0.0.1:%d", port), "logins", 500, 20*time.Second)); got != 500 {
		t.Fatalf("before the outage: %d delivered", got)
	}
	broker.Close() // outage
	write(400)
	w.rotate(t, 0) // rename
	write(400)
	w.rotate(t, 1) // copytruncate
	write(300)
	time.Sleep(time.Second)
	agent.Process.Signal(syscall.SIGKILL) // killed during the outage
	agent.Wait()
	agent = start()
	write(200)
	time.Sleep(500 * time.Millisecond)
	broker = startBroker() // back, same port, same data
	defer broker.Close()
	total := next - 1
	recs := kafkaRecords(t, fmt.Sprintf("127.0.0.1:%d", port), "logins", total, 60*time.Second)
	agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		t.Errorf("agent did not exit 0 on SIGTERM: %v", err)
	}
	seen := map[string]int{}
	for _, r := range recs {
		var ev struct {
			Thread string `json:"thread"`
		}
		json.Unmarshal(r.Value, &ev)
		seen[ev.Thread]++
	}
	var missing []int
	dups := 0
	for i := 1; i <= total; i++ {
		n := seen[fmt.Sprint(i)]
		if n == 0 {
			missing = append(missing, i)
		}
		if n > 1 {
			dups += n - 1
		}
	}
	if len(missing) > 0 {
		data, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		reg, _ := os.ReadFile(filepath.Join(dir, "registry.json"))
		ls, _ := exec.Command("ls", "-li", dir).CombinedOutput()
		t.Fatalf("%d of %d records lost (first %v)\nagent log:\n%s\nregistry:\n%s\n%s", len(missing), total, missing[:min(5, len(missing))], data, reg, ls)
	}
	if dups > maxInFlight+batch {
		t.Errorf("%d duplicates: more than the uncommitted window (%d)", dups, maxInFlight+batch)
	}
	t.Logf("%d records through an outage, two rotations and a kill -9: none lost, %d duplicates", total, dups)
	// The outage was logged once, not once per retry.
	data, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	if n := strings.Count(string(data), "output failing; retrying"); n == 0 || n > 4 {
		t.Errorf("output failure logged %d times: want once per state change", n)
	}
}

// processors: in the agent: the monitoring account dropped (counted),
// failures routed to a security topic, a field added; the rest to the
// output's topic.
func TestProcessorsRouteDropAndAdd(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "logins", "security"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit_login.log")
	for i := 1; i <= 70; i++ {
		user := "app"
		if i%10 == 0 {
			user = "monitor"
		}
		appendTo(t, logPath, pluginRecord(i, user))
	}
	cfg, err := config.LoadYAML([]byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs:
  kafka: {brokers: [%q], topic: logins}
processors:
  - drop_event: {when: {equals: {user: monitor}}}
  - route: {topic: security, when: {equals: {type: failed_login}}}
  - add_fields: {fields: {team: dba}}
`, logPath, filepath.Join(dir, "registry.json"), c.ListenAddrs()[0])), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(knownFormat, formatNames()); err != nil {
		t.Fatal(err)
	}
	if err := runAgent(context.Background(), cfg, agentOptions{once: true, stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	// 70 records: 7 from monitor dropped; of the other 63, those with
	// thread%7 == 0 are failed (10 of them, 70 and 14..63 minus 70).
	failed, ok := 0, 0
	for i := 1; i <= 70; i++ {
		if i%10 == 0 {
			continue
		}
		if i%7 == 0 {
			failed++
		} else {
			ok++
		}
	}
	sec := kafkaRecords(t, c.ListenAddrs()[0], "security", failed, 10*time.Second)
	main := kafkaRecords(t, c.ListenAddrs()[0], "logins", ok, 10*time.Second)
	if len(sec) != failed || len(main) != ok {
		t.Fatalf("security holds %d (want %d), logins %d (want %d)", len(sec), failed, len(main), ok)
	}
	for _, r := range append(sec, main...) {
		var ev map[string]any
		json.Unmarshal(r.Value, &ev)
		if ev["user"] == "monitor" || ev["fields"].(map[string]any)["team"] != "dba" {
			t.Fatalf("shipped %s", r.Value)
		}
		if (r.Topic == "security") != (ev["type"] == "failed_login") {
			t.Fatalf("%s went to %s", ev["type"], r.Topic)
		}
	}
}
