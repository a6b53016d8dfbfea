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

// The real process sets pipeline.memory_limit on its runtime: auto with
// the defaults, and a size as given (the runtime's own readback is logged).
func TestRunSetsTheGoMemoryLimit(t *testing.T) {
	bin := agentBinary(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "a.log")
	os.WriteFile(logPath, []byte(pluginRecord(1, "app")), 0o644)
	for _, tc := range []struct{ setting, want string }{{"", ""}, {"memory_limit: 64MiB", fmt.Sprint(64 << 20)}} {
		cfgPath := filepath.Join(dir, "auditlogin.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
inputs: [{paths: [%q], timezone: UTC}]
registry: {path: %q}
outputs: {file: {path: %q}}
pipeline: {%s}
log: {level: debug, format: json}
`, logPath, filepath.Join(dir, "registry.json"), filepath.Join(dir, "out.ndjson"), tc.setting)), 0o644)
		if tc.want == "" {
			cfg, err := config.Load(cfgPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			tc.want = fmt.Sprint(cfg.EffectiveMemoryLimit())
		}
		cmd := exec.Command(bin, "run", "--once", "--config", cfgPath)
		cmd.Env = append(os.Environ(), "GOMEMLIMIT=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if want := `"msg":"Go memory limit set","memory_limit":` + tc.want + `}`; !strings.Contains(string(out), want) {
			t.Errorf("%q: no %s in:\n%s", tc.setting, want, out)
		}
	}
}
