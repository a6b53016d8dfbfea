package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/auditlogin/auditlogin/config"
)

func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func eventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, "event.schema.json")
}

func validateLines(t *testing.T, sch *jsonschema.Schema, ndjson string) int {
	t.Helper()
	return validateSchemaLines(t, sch, "event.schema.json", ndjson)
}

// validateSchemaLines validates every line of ndjson with sch (docs/name)
// and returns how many there were.
func validateSchemaLines(t *testing.T, sch *jsonschema.Schema, name, ndjson string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(ndjson), "\n") {
		if line == "" {
			continue
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		if err != nil {
			t.Fatalf("not JSON: %s: %v", line, err)
		}
		if err := sch.Validate(v); err != nil {
			t.Fatalf("event does not match docs/%s:\n%s\n%v", name, line, err)
		}
		n++
	}
	return n
}

func TestParseOutputMatchesSchema(t *testing.T) {
	sch := eventSchema(t)
	files, _ := filepath.Glob("../../parser/testdata/*/*.log")
	files = append(files, "../../examples/audit_login.log")
	code, out, _ := runCmd(t, "", append([]string{"parse", "--format", "audit_login", "--timezone", "Europe/Berlin"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	// parse reads audit_login by default: the announcement twice (testdata
	// links to examples/), 11 hostile records that parse (its 5 others are
	// rejected, on stderr) and 3 pasted ones; the other formats' files give
	// nothing.
	if n := validateLines(t, sch, out); n != 11+11+11+3 {
		t.Fatalf("%d events validated, want 36", n)
	}
}

func TestRunOutputMatchesSchema(t *testing.T) {
	sch := eventSchema(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`
inputs:
  - paths: ["../../examples/audit_login.log", "../../parser/testdata/audit_login/hostile.log"]
registry: {path: `+dir+`/registry.json}
outputs:
  file: {path: `+dir+`/events.ndjson}
fields: {env: test, dc: fra1}
log: {level: error}
`), 0o644)
	code, _, stderr := runCmd(t, "", "run", "--once", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if n := validateLines(t, sch, string(data)); n != 22 {
		t.Fatalf("%d events, want 22 (11 samples + 11 hostile)", n)
	}
	var ev map[string]any
	json.Unmarshal(data[:bytes.IndexByte(data, '\n')], &ev)
	if ev["fields"].(map[string]any)["dc"] != "fra1" || ev["agent"].(map[string]any)["version"] == "" {
		t.Fatalf("fields/agent missing: %v", ev)
	}
	// The rejected records of hostile.log are in the dead-letter file.
	dl, _ := os.ReadFile(filepath.Join(dir, "dead-letter.ndjson"))
	if got := strings.Count(string(dl), "\n"); got != 5 {
		t.Fatalf("dead-letter holds %d records, want 5:\n%s", got, dl)
	}
	// A second run ships nothing again: the registry was committed.
	code, _, stderr = runCmd(t, "", "run", "--once", "--config", cfg)
	data2, _ := os.ReadFile(filepath.Join(dir, "events.ndjson"))
	if code != 0 || !bytes.Equal(data, data2) {
		t.Fatalf("second run changed the output (exit %d): %s", code, stderr)
	}
}

func TestParseCommand(t *testing.T) {
	in := `{"ts":"2026-11-25 10:00:00","type":"failed_login","myhost":"h","thread":"1","user":"(null)","priv_user":"(null)","host":"(null)","ip":"192.0.2.1"}
not a record
`
	code, out, errs := runCmd(t, in, "parse", "--timezone", "UTC")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("stdout is not one event: %q", out)
	}
	if ev["user"] != nil || ev["ip"] != "192.0.2.1" || ev["@timestamp"] != "2026-11-25T10:00:00.000Z" {
		t.Fatalf("event: %v", ev)
	}
	if strings.TrimSpace(errs) != `-:147: not an audit_login record: does not start with {"ts":"` {
		t.Fatalf("stderr: %q", errs)
	}
	if code, _, _ := runCmd(t, in, "parse", "--strict"); code != 1 {
		t.Fatalf("--strict with a rejected record exited %d, want 1", code)
	}
	if code, _, errs := runCmd(t, "", "parse", "--format", "nope"); code != 2 || !strings.Contains(errs, `unknown format "nope"`) {
		t.Fatalf("unknown format: %d %s", code, errs)
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("inputs:\n  - paths: []\n    format: nope\noutputs: {}\n"), 0o644)
	code, _, errs := runCmd(t, "", "check", "--config", bad)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"inputs[0].paths:", "inputs[0].format:", "outputs: no output configured"} {
		if !strings.Contains(errs, want) {
			t.Errorf("missing %q in %s", want, errs)
		}
	}
	code, out, _ := runCmd(t, "", "check", "--config", "../../examples/auditlogin.yaml")
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("example config: %d %s", code, out)
	}
	if code, _, errs := runCmd(t, "", "run", "--config", bad); code != 2 || !strings.Contains(errs, "inputs[0].format") {
		t.Fatalf("run with a bad config must fail at start with the field path: %d %s", code, errs)
	}
}

// The config the .deb installs is valid and checks without side effects.
func TestPackagedConfig(t *testing.T) {
	code, out, errs := runCmd(t, "", "check", "--config", "../../packaging/auditlogin.yaml")
	if code != 0 || !strings.Contains(out, "output file: writes /var/log/auditlogin/events.ndjson") {
		t.Fatalf("packaged config: %d\n%s\n%s", code, out, errs)
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := runCmd(t, "", "version"); code != 0 || !strings.HasPrefix(out, "auditlogin ") {
		t.Fatalf("version: %d %q", code, out)
	}
	// A binary built from this checkout without stamping (this test, go
	// run, go build) says what make build and the .deb stamp.
	want, err := exec.Command("bash", "../../packaging/version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := Version(); got != strings.TrimSpace(string(want)) || got == "dev" {
		t.Fatalf("Version() = %q, packaging/version says %q", got, want)
	}
	if code, _, errs := runCmd(t, "", "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
}

// With no config anywhere, run says where it looked and runs the demo.
func TestRunWithoutConfigUsesDemo(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "examples"), 0o755)
	sample, _ := os.ReadFile("../../examples/audit_login.log")
	os.WriteFile(filepath.Join(dir, "examples", "audit_login.log"), sample, 0o644)
	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)
	oldPaths := config.SearchPaths
	config.SearchPaths = []string{"./auditlogin.yaml", filepath.Join(dir, "etc", "auditlogin.yaml")}
	defer func() { config.SearchPaths = oldPaths }()
	old := os.Getenv("AUDITLOGIN_CONFIG")
	os.Unsetenv("AUDITLOGIN_CONFIG")
	defer os.Setenv("AUDITLOGIN_CONFIG", old)
	code, out, errs := runCmd(t, "", "run", "--once")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "no config file in ./auditlogin.yaml or "+filepath.Join(dir, "etc", "auditlogin.yaml")) {
		t.Fatalf("does not say where it looked: %s", errs)
	}
	if n := strings.Count(out, "\n"); n != 11 {
		t.Fatalf("demo shipped %d events to stdout, want 11", n)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "auditlogin-data", "events.ndjson")); err != nil || strings.Count(string(data), "\n") != 11 {
		t.Fatalf("demo file output: %v", err)
	}
	// Every login reaches an index with an ip-typed field: each ip is null or
	// an address in canonical form (the announcement's 7th record has
	// 10.0.0.03, which Elasticsearch's ip type refuses as written).
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Thread     string  `json:"thread"`
			IP         *string `json:"ip"`
			IPOriginal string  `json:"ip_original"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.IP == nil {
			continue
		}
		a, err := netip.ParseAddr(*ev.IP)
		if err != nil || a.String() != *ev.IP {
			t.Errorf("thread %s: ip %q is not a canonical address", ev.Thread, *ev.IP)
		}
		if ev.Thread == "74153874" && (*ev.IP != "10.0.0.3" || ev.IPOriginal != "10.0.0.03") {
			t.Errorf("the 7th record: ip %q, ip_original %q; want 10.0.0.3 and 10.0.0.03", *ev.IP, ev.IPOriginal)
		}
	}
}

// Every subcommand's -h/--help is its description and flags on stdout, exit
// 0; an unknown flag is one line and a hint on stderr, exit 2; completion
// scripts parse; the man page is made from the same help.
func TestHelpCompletionAndMan(t *testing.T) {
	for _, c := range []string{"run", "check", "parse", "report", "setup"} {
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := runCmd(t, "", c, h)
			if code != 0 || !strings.HasPrefix(out, "usage: auditlogin "+c) || !strings.Contains(out, "\nFlags:\n  -") || errs != "" {
				t.Errorf("%s %s: exit %d, stdout %.80q, stderr %q", c, h, code, out, errs)
			}
		}
		code, out, errs := runCmd(t, "", c, "--no-such-flag")
		if code != 2 || out != "" || !strings.Contains(errs, "not defined: -no-such-flag") || !strings.Contains(errs, "auditlogin "+c+" --help") {
			t.Errorf("%s --no-such-flag: exit %d, stderr %q", c, code, errs)
		}
	}
	code, bash, _ := runCmd(t, "", "completion", "bash")
	if code != 0 || !strings.Contains(bash, `report) opts="`) || !strings.Contains(bash, "--mysql-dsn") {
		t.Fatalf("bash completion: %d %.200s", code, bash)
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(bash)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bash -n: %v %s", err, out)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		if code, out, _ := runCmd(t, "", "completion", sh); code != 0 || !strings.Contains(out, "--stale-after") && !strings.Contains(out, "stale-after") {
			t.Errorf("%s completion: %d %.200s", sh, code, out)
		}
	}
	if code, _, _ := runCmd(t, "", "completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
	code, man, _ := runCmd(t, "", "__man")
	if code != 0 || !strings.HasPrefix(man, ".TH AUDITLOGIN 1") || !strings.Contains(man, ".SS report") || !strings.Contains(man, "\\-\\-stale\\-after") && !strings.Contains(man, "-stale-after") {
		t.Fatalf("man page: %d %.300s", code, man)
	}
}

// Maps in log lines are fields, in key order, not Go's map[...] text.
func TestMapAttrLogsFields(t *testing.T) {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("stopped", mapAttr("shipped", map[string]int64{"kafka": 10, "elasticsearch": 9}))
	if !strings.Contains(b.String(), "shipped.elasticsearch=9 shipped.kafka=10") || strings.Contains(b.String(), "map[") {
		t.Fatalf("%s", b.String())
	}
}

// A one-shot run ends with one line that sums it up, back-pressure
// included: how long reading waited for the outputs.
func TestRunOnceLogsItsSummary(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`
inputs:
  - paths: ["../../examples/audit_login.log"]
registry: {path: `+dir+`/registry.json}
outputs:
  file: {path: `+dir+`/events.ndjson}
log: {level: info}
`), 0o644)
	code, _, stderr := runCmd(t, "", "run", "--once", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var summary struct {
		Msg            string           `json:"msg"`
		Events         int              `json:"events"`
		Shipped        map[string]int64 `json:"shipped"`
		Elapsed        string           `json:"elapsed"`
		ReadingBlocked string           `json:"reading_blocked"`
	}
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, `"msg":"stopped"`) {
			if err := json.Unmarshal([]byte(line), &summary); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
		}
	}
	if summary.Msg != "stopped" || summary.Events != 11 || summary.Shipped["file"] != 11 {
		t.Fatalf("summary %+v in:\n%s", summary, stderr)
	}
	for _, d := range []string{summary.Elapsed, summary.ReadingBlocked} {
		if v, err := time.ParseDuration(d); err != nil || v < 0 {
			t.Errorf("duration %q in the summary: %v", d, err)
		}
	}
}
