package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

// runPipelineSetting runs the real process once over a one-record log
// with the pipeline setting given and env added, at debug level; it returns
// what the process printed.
func runPipelineSetting(t *testing.T, bin, setting string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "a.log")
	os.WriteFile(logPath, []byte(pluginRecord(1, "app")), 0o644)
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {file: {path: %q}}
pipeline: {%s}
log: {level: debug, format: json}
`, logPath, filepath.Join(dir, "registry.json"), filepath.Join(dir, "out.ndjson"), setting)), 0o644)
	cmd := exec.Command(bin, "run", "--once", "--config", cfgPath)
	cmd.Env = append(append(os.Environ(), "GOMEMLIMIT=", "GOMAXPROCS="), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

// The real process sets pipeline.memory_limit on its runtime: auto with
// the defaults, and a size as given (the runtime's own readback is logged).
func TestRunSetsTheGoMemoryLimit(t *testing.T) {
	bin := agentBinary(t)
	def := config.Default() // the auto limit reads the pipeline's and enrichment's settings only
	for _, tc := range []struct{ setting, want string }{{"", fmt.Sprint(def.EffectiveMemoryLimit())}, {"memory_limit: 64MiB", fmt.Sprint(64 << 20)}} {
		out := runPipelineSetting(t, bin, tc.setting)
		if want := `"msg":"Go memory limit set","memory_limit":` + tc.want + `}`; !strings.Contains(out, want) {
			t.Errorf("%q: no %s in:\n%s", tc.setting, want, out)
		}
	}
}

// The real process runs on pipeline.max_procs cores (1 by default), unless
// GOMAXPROCS is set (the runtime's own readback is logged).
func TestRunSetsMaxProcs(t *testing.T) {
	bin := agentBinary(t)
	for _, tc := range []struct{ setting, env, want string }{
		{"", "", `"msg":"cores the agent runs on","max_procs":1}`},
		{"max_procs: 2", "", `"msg":"cores the agent runs on","max_procs":2}`},
		{"", "GOMAXPROCS=3", `"msg":"cores from GOMAXPROCS; pipeline.max_procs is not used","GOMAXPROCS":"3"}`},
	} {
		var env []string
		if tc.env != "" {
			env = append(env, tc.env)
		}
		if out := runPipelineSetting(t, bin, tc.setting, env...); !strings.Contains(out, tc.want) {
			t.Errorf("%q %s: no %s in:\n%s", tc.setting, tc.env, tc.want, out)
		}
	}
}

// Toward a distant cluster (every bulk answered 20 ms later), adaptive
// concurrency raises the in-flight bound and the auto memory limit follows
// it: at each change the runtime's own readback is what MemoryLimitFor
// gives for the bound logged, above the limit at start. With an explicit
// limit, nothing follows.
func TestTheAutoMemoryLimitFollowsTheInFlightBound(t *testing.T) {
	bin := agentBinary(t)
	es := estest.New()
	defer es.Close()
	es.Lock()
	es.BulkDelay = 20 * time.Millisecond
	es.Unlock()
	var lines strings.Builder
	for i := range 40000 {
		lines.WriteString(pluginRecord(i, "app"))
	}
	def := config.Default() // the auto limit reads the pipeline's and enrichment's settings only
	for _, setting := range []string{"batch_size: 256", "batch_size: 256, memory_limit: 64MiB"} {
		dir := t.TempDir()
		logPath := filepath.Join(dir, "a.log")
		os.WriteFile(logPath, []byte(lines.String()), 0o644)
		cfgPath := filepath.Join(dir, "auditlogin.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {elasticsearch: {hosts: [%q], index: follow}}
pipeline: {%s}
log: {level: debug, format: json}
`, logPath, filepath.Join(dir, "registry.json"), es.URL, setting)), 0o644)
		cmd := exec.Command(bin, "run", "--once", "--config", cfgPath)
		cmd.Env = append(os.Environ(), "GOMEMLIMIT=", "GOMAXPROCS=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		def.Pipeline.BatchSize = 256
		start := def.MemoryLimitFor(4 * 256)
		followed := 0
		for _, l := range strings.Split(string(out), "\n") {
			var rec struct {
				Msg         string `json:"msg"`
				MaxInFlight int    `json:"max_in_flight"`
				MemoryLimit int64  `json:"memory_limit"`
			}
			if json.Unmarshal([]byte(l), &rec) != nil || rec.Msg != "Go memory limit follows the in-flight bound" {
				continue
			}
			followed++
			if want := def.MemoryLimitFor(rec.MaxInFlight); rec.MemoryLimit != want || (rec.MaxInFlight > 4*256 && want <= start) {
				t.Errorf("%s: bound %d, memory limit %d, want %d (at start %d)", setting, rec.MaxInFlight, rec.MemoryLimit, want, start)
			}
		}
		switch explicit := strings.Contains(setting, "memory_limit"); {
		case explicit && followed > 0:
			t.Errorf("%s: the limit followed the bound %d times:\n%s", setting, followed, out)
		case !explicit && followed == 0:
			t.Errorf("%s: the limit never followed the bound:\n%s", setting, out)
		}
		if n := es.Count("follow"); n != 40000 {
			t.Fatalf("%s: %d documents in the index, want 40000", setting, n)
		}
	}
}
