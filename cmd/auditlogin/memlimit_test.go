package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditlogin/auditlogin/config"
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
