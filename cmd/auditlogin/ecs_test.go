package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

func compileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile("../../docs/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// parse --schema ecs|both writes every sample of every format as its JSON
// Schema says, and the documented mapping holds on the announcement's first
// record.
func TestParseSchemasMatchTheirJSONSchemas(t *testing.T) {
	files, _ := filepath.Glob("../../parser/testdata/*/*.log")
	seed := 0
	for _, f := range files {
		_, out, _ := runCmd(t, "", "parse", "--timezone", "UTC", "--myhost", "db-1", f)
		seed += strings.Count(out, "\n")
	}
	for schema, file := range map[string]string{"ecs": "event.ecs.schema.json", "both": "event.both.schema.json"} {
		sch := compileSchema(t, file)
		n := 0
		for _, f := range files {
			code, out, errs := runCmd(t, "", "parse", "--schema", schema, "--timezone", "UTC", "--myhost", "db-1", f)
			if code != 0 && !strings.Contains(errs, "matches no known log format") {
				t.Fatalf("%s: exit %d: %s", f, code, errs)
			}
			n += validateSchemaLines(t, sch, file, out)
		}
		if n != seed || n < 60 {
			t.Fatalf("%s: %d events validated over every format's samples, the seed schema has %d", schema, n, seed)
		}
		t.Logf("%s: %d events of %d sample files valid against docs/%s", schema, n, len(files), file)
	}
	code, out, _ := runCmd(t, "", "parse", "--schema", "ecs", "--timezone", "UTC", "../../examples/audit_login.log")
	if code != 0 {
		t.Fatal("parse failed")
	}
	var ev map[string]any
	json.Unmarshal([]byte(out[:strings.IndexByte(out, '\n')]), &ev)
	get := func(path string) any {
		var v any = ev
		for _, p := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		return v
	}
	for path, want := range map[string]any{"user.name": "web_user", "user.effective.name": "web_user", "source.ip": "10.0.0.87",
		"source.domain": "web-87.localdomain", "host.name": "gromit03", "event.action": "successful_login",
		"event.outcome": "success", "service.type": "mysql", "mysql.thread_id": 74153868.0, "auditlogin.ts": "2013-09-11 09:11:47",
		"event.dataset": "auditlogin.audit_login", "@timestamp": "2013-09-11T09:11:47.000Z"} {
		if got := get(path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if code, _, errs := runCmd(t, "", "parse", "--schema", "ECS", "../../examples/audit_login.log"); code != exitConfig || !strings.Contains(errs, "--schema") {
		t.Errorf("--schema ECS: exit %d %s", code, errs)
	}
}

// The agent ships ECS (and both) when event_schema says so, with typed
// fields as labels; the report reads those files as it reads the seed's,
// and reads Elasticsearch indices of ECS events (detected, or from
// --config) with the same result as the raw log.
func TestRunShipsECSAndReportReadsIt(t *testing.T) {
	es := estest.New()
	defer es.Close()
	raw := reportJSON(t, "--timezone", "UTC", "../../examples/audit_login.log")
	for _, schema := range []string{"ecs", "both"} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`
inputs: [{paths: ["../../examples/audit_login.log"], timezone: UTC}]
registry: {path: %q}
outputs:
  file: {path: %q}
  elasticsearch: {hosts: [%q], index: "%s-%%{+yyyy.MM.dd}"}
event_schema: %s
fields: {primary: true, weight: 3, env: prod}
log: {level: error}
`, filepath.Join(dir, "r.json"), filepath.Join(dir, "events.ndjson"), es.URL, schema, schema)), 0o644)
		if code, _, errs := runCmd(t, "", "run", "--once", "--config", cfg); code != 0 {
			t.Fatalf("%s: run: %s", schema, errs)
		}
		data, _ := os.ReadFile(filepath.Join(dir, "events.ndjson"))
		file := "event." + schema + ".schema.json"
		if n := validateSchemaLines(t, compileSchema(t, file), file, string(data)); n != 11 {
			t.Fatalf("%s: %d events", schema, n)
		}
		if !strings.Contains(string(data), `"labels":{"env":"prod","primary":true,"weight":3}`) {
			t.Errorf("%s: typed labels missing: %.400s", schema, data)
		}
		for name, rep := range map[string]map[string]any{
			"file":     reportJSON(t, filepath.Join(dir, "events.ndjson")),
			"es":       reportJSON(t, "--es", es.URL, "--index", schema+"-*"),
			"--config": reportJSON(t, "--config", cfg, "--index", schema+"-*"),
		} {
			for _, k := range []string{"totals", "servers", "hours", "top_sources", "root_logins", "probes", "accounts", "failed_by_account", "failed_by_source", "from", "until"} {
				a, _ := json.Marshal(raw[k])
				b, _ := json.Marshal(rep[k])
				if string(a) != string(b) {
					t.Errorf("%s, report from %s: %s differs:\n raw %s\n got %s", schema, name, k, a, b)
				}
			}
		}
	}
	if code, _, errs := runCmd(t, "", "report", "--es", es.URL, "--schema", "ECS"); code != exitConfig || !strings.Contains(errs, "--schema") {
		t.Errorf("--schema ECS: exit %d %s", code, errs)
	}
}
