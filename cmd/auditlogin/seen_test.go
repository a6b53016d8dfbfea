package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seenCount returns how many entries the seen-sources file holds (-1: none
// or unreadable).
func seenCount(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	var f struct {
		Hashes [][2]uint64 `json:"hashes"`
	}
	if json.Unmarshal(data, &f) != nil {
		return -1
	}
	return len(f.Hashes)
}

// The seen-sources file is written while the agent runs (copied on the
// pipeline's tick, on Enrich's goroutine, written beside it) and at the
// end; a later run reads it: the same sources are not new again.
func TestSeenSourcesAreWrittenWhileRunningAndRead(t *testing.T) {
	defer func(d time.Duration) { seenWriteEvery = d }(seenWriteEvery)
	seenWriteEvery = 50 * time.Millisecond
	dir := t.TempDir()
	logPath, seen, out := filepath.Join(dir, "audit_login.log"), filepath.Join(dir, "seen.json"), filepath.Join(dir, "out.ndjson")
	record := func(i int) string {
		return fmt.Sprintf(`{"ts":"2026-12-02 03:00:%02d","type":"successful_login","myhost":"db1","thread":"%d","user":"app","priv_user":"app","host":"h%d","ip":"10.0.0.%d"}`+"\n", i%60, i, i, i)
	}
	write := func(from, to int) {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			f.WriteString(record(i))
		}
		f.Close()
	}
	write(1, 4)
	yaml := fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {file: {path: %q}}
pipeline: {flush_interval: 20ms}
tail: {scan_interval: 50ms, poll_interval: 10ms}
enrich: {new_source: {path: %q}}
metrics: {listen: "127.0.0.1:0"}
`, logPath, filepath.Join(dir, "registry.json"), out, seen)
	_, stop := startAgent(t, yaml, &syncBuffer{})
	waitUntil(t, "the seen-sources file to hold the first 3 sources while the agent runs", func() bool { return seenCount(seen) == 3 })
	write(4, 6)
	waitUntil(t, "the seen-sources file to hold 5 sources while the agent runs", func() bool { return seenCount(seen) == 5 })
	write(6, 7)
	waitUntil(t, "the 6th event shipped", func() bool {
		data, _ := os.ReadFile(out)
		return strings.Count(string(data), "\n") == 6
	})
	stop() // the 6th source reaches the file with the write at the end
	if n := seenCount(seen); n != 6 {
		t.Fatalf("after the run the seen-sources file holds %d sources, want 6", n)
	}
	data, _ := os.ReadFile(out)
	if n := strings.Count(string(data), `"new_source"`); n != 6 {
		t.Fatalf("%d events tagged new_source in the first run, want 6", n)
	}

	// A second run over the same sources (a fresh registry: read again).
	os.Remove(out)
	cfg2 := filepath.Join(dir, "again.yaml")
	os.WriteFile(cfg2, []byte(strings.Replace(yaml, "registry.json", "registry2.json", 1)), 0o644)
	code, _, stderr := runCmd(t, "", "run", "--once", "--config", cfg2)
	if code != 0 {
		t.Fatalf("run --once: %d\n%s", code, stderr)
	}
	data, _ = os.ReadFile(out)
	if n, m := strings.Count(string(data), "\n"), strings.Count(string(data), `"new_source"`); n != 6 || m != 0 {
		t.Fatalf("second run: %d events, %d tagged new_source (want 6, 0)", n, m)
	}
}
