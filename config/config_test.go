package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func known(f string) bool { return f == "audit_login" }

var formats = []string{"audit_login"}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auditlogin.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// refused loads body and validates it: the config must be refused, its
// error naming each of want (a field path and what is expected). It
// returns the error for further checks.
func refused(t *testing.T, body string, want ...string) error {
	t.Helper()
	cfg, err := Load(write(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate(known, formats)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, err)
		}
	}
	return err
}

// The shipped example documents every default: loading it gives Default()
// plus its inputs and outputs.
func TestExampleFileMatchesDefaults(t *testing.T) {
	cfg, err := Load("../examples/auditlogin.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(known, formats); err != nil {
		t.Fatal(err)
	}
	def := Default()
	if !reflect.DeepEqual(cfg.Pipeline, def.Pipeline) || !reflect.DeepEqual(cfg.Tail, def.Tail) ||
		!reflect.DeepEqual(cfg.Registry, def.Registry) || !reflect.DeepEqual(cfg.Log, def.Log) ||
		!reflect.DeepEqual(cfg.Metrics, def.Metrics) || cfg.Enrich.BruteForce != def.Enrich.BruteForce ||
		cfg.Enrich.NewSource.MaxEntries != def.Enrich.NewSource.MaxEntries || !cfg.Enrich.Enabled {
		t.Fatalf("examples/auditlogin.yaml and Default() disagree:\n%+v\n%+v", cfg, def)
	}
	if cfg.Outputs.Stdout == nil || cfg.Outputs.File == nil || cfg.Outputs.File.MaxSize != 100<<20 {
		t.Fatalf("outputs: %+v", cfg.Outputs)
	}
	if cfg.DeadLetter.Path != "/var/lib/auditlogin/dead-letter.ndjson" {
		t.Fatalf("dead letter default path: %q", cfg.DeadLetter.Path)
	}
}

func TestMinimalConfigGetsDefaults(t *testing.T) {
	p := write(t, "inputs:\n  - paths: [/tmp/a.log]\noutputs:\n  stdout: {}\n")
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(known, formats); err != nil {
		t.Fatal(err)
	}
	in := cfg.Inputs[0]
	if in.Format != "audit_login" || in.Timezone != "Local" || in.StartAt != "beginning" {
		t.Fatalf("input defaults: %+v", in)
	}
	if cfg.Outputs.Stdout == nil || cfg.Outputs.File != nil {
		t.Fatalf("stdout: {} must enable stdout only: %+v", cfg.Outputs)
	}
}

func TestUnknownKeysNameTheirPath(t *testing.T) {
	p := write(t, `
inputs:
  - paths: [/tmp/a.log]
    fromat: audit_login
outputs:
  file: {pat: /tmp/x}
registy: {path: /x}
`)
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("typos accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"inputs[0].fromat: unknown key (expected one of: format, logouts, myhost, pasted, paths, start_at, timezone)",
		"outputs.file.pat: unknown key (expected one of: max_files, max_size, path)",
		"registy: unknown key",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

// fields: keep their YAML types: a boolean stays a boolean, a number a number.
func TestFieldsKeepTheirTypes(t *testing.T) {
	p := write(t, "inputs:\n  - paths: [/a]\noutputs: {stdout: {}}\nfields: {primary: true, weight: 3, ratio: 0.5, env: prod, quoted: \"true\"}\n")
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(known, formats); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"primary": true, "weight": 3, "ratio": 0.5, "env": "prod", "quoted": "true"}
	if !reflect.DeepEqual(cfg.Fields, want) {
		t.Fatalf("fields %#v, want %#v", cfg.Fields, want)
	}
	if cfg.EventSchema != "auditlogin" {
		t.Fatalf("event_schema defaults to %q", cfg.EventSchema)
	}
}

func TestTypeErrorsNameTheirPath(t *testing.T) {
	p := write(t, "inputs:\n  - paths: [/a]\noutputs: {stdout: {}}\nregistry: {flush_interval: soon}\npipeline: {batch_size: many}\n")
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("bad types accepted")
	}
	for _, want := range []string{"registry.flush_interval:", "pipeline.batch_size:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, err)
		}
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	refused(t, `
inputs:
  - paths: []
    format: nope
    timezone: Mars/Olympus
    start_at: middle
outputs:
  file: {path: ""}
pipeline: {batch_size: 100, max_in_flight: 10}
log: {level: loud}
event_schema: ECS
fields: {ok: 1, list: [a, b], nested: {a: b}}
`,
		"inputs[0].paths: at least one path",
		`inputs[0].format: unknown format "nope" (expected one of: audit_login)`,
		"inputs[0].timezone:",
		`inputs[0].start_at: "middle" (expected beginning or end)`,
		"outputs.file.path: required",
		"pipeline.max_in_flight: 10 (expected 0 for four batches, or at least twice",
		`log.level: "loud"`,
		`event_schema: "ECS" (expected auditlogin, ecs or both)`,
		"fields.list: a list (expected a string, number or boolean)",
		"fields.nested: a map (expected a string, number or boolean)",
	)
}

// The Kafka output's key and headers name event fields; a wrong one is
// refused at start by its path, with what is expected.
func TestKafkaKeyAndHeadersNameFields(t *testing.T) {
	err := refused(t, `
inputs: [{paths: [/a]}]
outputs:
  kafka: {brokers: ["k:9092"], topic: t, key: usr, headers: [id, format, hostname, agent, id]}
`,
		`outputs.kafka.key: unknown field "usr" (expected id, ts,`,
		`outputs.kafka.headers[3]: unknown field "agent" (expected hostname, the agent's host name, or an event field: id, ts,`,
		`outputs.kafka.headers[4]: "id" twice`,
	)
	for _, bad := range []string{"headers[0]", "headers[1]", "headers[2]"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("%s is valid, but:\n%s", bad, err)
		}
	}
	// None by default; fields.NAME is a field.
	p := write(t, "inputs: [{paths: [/a]}]\noutputs:\n  kafka: {brokers: [\"k:9092\"], topic: t, key: fields.dc, headers: [fields.dc, myhost]}\n")
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(known, formats); err != nil {
		t.Fatal(err)
	}
	p = write(t, "inputs: [{paths: [/a]}]\noutputs:\n  kafka: {brokers: [\"k:9092\"], topic: t}\n")
	if cfg, err = Load(p, nil); err != nil {
		t.Fatal(err)
	}
	if h := cfg.Outputs.Kafka.Headers; len(h) != 0 {
		t.Fatalf("default headers %v, want none", h)
	}
}

func TestNoOutputsIsAnError(t *testing.T) {
	refused(t, "inputs:\n  - paths: [/a]\n", "outputs: no output configured")
}

func TestEnvironmentOverridesAnyKey(t *testing.T) {
	p := write(t, "inputs:\n  - paths: [/a]\noutputs:\n  stdout: {}\n")
	env := []string{
		"AUDITLOGIN_OUTPUTS__FILE__PATH=/tmp/events.ndjson",
		"AUDITLOGIN_OUTPUTS__FILE__MAX_SIZE=64KiB",
		"AUDITLOGIN_INPUTS__0__PATHS=[/b, /c]",
		"AUDITLOGIN_INPUTS__0__TIMEZONE=UTC",
		"AUDITLOGIN_INPUTS__1__PATHS=[/d]",
		"AUDITLOGIN_REGISTRY__FLUSH_INTERVAL=3s",
		"AUDITLOGIN_PIPELINE__BATCH_SIZE=10",
		"AUDITLOGIN_FIELDS__ENV=prod",
		"AUDITLOGIN_CONFIG=/ignored.yaml",
		"AUDITLOGIN_E2E=require",
		"AUDITLOGIN_SOAK=1",
		"HOME=/root",
	}
	cfg, err := Load(p, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(known, formats); err != nil {
		t.Fatal(err)
	}
	if cfg.Outputs.File == nil || cfg.Outputs.File.Path != "/tmp/events.ndjson" || cfg.Outputs.File.MaxSize != 64<<10 {
		t.Fatalf("file: %+v", cfg.Outputs.File)
	}
	if !reflect.DeepEqual(cfg.Inputs[0].Paths, []string{"/b", "/c"}) || cfg.Inputs[0].Timezone != "UTC" {
		t.Fatalf("inputs[0]: %+v", cfg.Inputs[0])
	}
	if len(cfg.Inputs) != 2 || cfg.Inputs[1].Paths[0] != "/d" || cfg.Inputs[1].Format != "audit_login" {
		t.Fatalf("inputs[1]: %+v", cfg.Inputs)
	}
	if cfg.Registry.FlushInterval != 3*time.Second || cfg.Pipeline.BatchSize != 10 || cfg.Fields["env"] != "prod" {
		t.Fatalf("cfg: %+v", cfg)
	}
	// A typo in an environment variable is caught like one in the file.
	if _, err := Load(p, []string{"AUDITLOGIN_OUTPUTS__FLIE__PATH=/x"}); err == nil || !strings.Contains(err.Error(), "outputs.flie: unknown key") {
		t.Fatalf("env typo: %v", err)
	}
	if _, err := Load(p, []string{"AUDITLOGIN_INPUTS__5__PATHS=[/x]"}); err == nil {
		t.Fatal("out-of-range list index accepted")
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "64KiB": 65536, "100MiB": 100 << 20, "1GiB": 1 << 30, "10KB": 10000, "5 MB": 5000000} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || int64(b) != want {
			t.Errorf("%s: %d %v", in, b, err)
		}
	}
	var b ByteSize
	if err := b.UnmarshalText([]byte("lots")); err == nil {
		t.Error("bad size accepted")
	}
}

func TestFindSearchesInOrder(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	old := SearchPaths
	defer func() { SearchPaths = old }()
	SearchPaths = []string{a, b}
	if _, ok := Find(); ok {
		t.Fatal("found a config in an empty dir")
	}
	os.WriteFile(b, nil, 0o644)
	if p, _ := Find(); p != b {
		t.Fatalf("found %q", p)
	}
	os.WriteFile(a, nil, 0o644)
	if p, _ := Find(); p != a {
		t.Fatalf("found %q, want the first", p)
	}
}

// pipeline.memory_limit: auto (the default) is derived from the bounds it
// covers; off and a size are taken as given; anything else is refused with
// its field path.
func TestMemoryLimit(t *testing.T) {
	load := func(pipeline string) (Config, error) {
		return Load(write(t, "inputs:\n  - paths: [/a]\noutputs: {stdout: {}}\n"+pipeline), nil)
	}
	def, err := load("")
	if err != nil {
		t.Fatal(err)
	}
	// 10 MiB + 2 × min(2048 events × 1 KiB, 8 MiB) + brute-force table + 100,000 sources × 24 B.
	if got, want := def.EffectiveMemoryLimit(), int64(10<<20+2*(2<<20)+3200000+2400000); got != want {
		t.Errorf("default: %d, want %d", got, want)
	}
	if !def.AutoMemoryLimit() {
		t.Error("auto is the default")
	}
	// Adaptive concurrency raising the bound to 8192 events raises it (and
	// lowering the bound lowers it); 9000 reaches max_in_flight_bytes.
	for events, want := range map[int]int64{8192: 10<<20 + 2*(8<<20) + 3200000 + 2400000, 9000: 10<<20 + 2*(8<<20) + 3200000 + 2400000,
		2048: def.EffectiveMemoryLimit(), 0: def.EffectiveMemoryLimit()} {
		if got := def.MemoryLimitFor(events); got != want {
			t.Errorf("default, %d events in flight: %d, want %d", events, got, want)
		}
	}
	fixed, err := load("pipeline: {adaptive_concurrency: false}\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fixed.EffectiveMemoryLimit(), def.EffectiveMemoryLimit(); got != want {
		t.Errorf("adaptive_concurrency off: %d, want %d", got, want)
	}
	big, err := load("pipeline: {batch_size: 4096, max_in_flight_bytes: 64MiB}\nenrich: {enabled: false}\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := big.EffectiveMemoryLimit(), int64(10<<20+2*(16<<20)); got != want {
		t.Errorf("16384 in flight, no enrichment: %d, want %d", got, want)
	}
	if got, want := big.MemoryLimitFor(65536), int64(10<<20+2*(64<<20)); got != want {
		t.Errorf("65536 in flight (adaptive), no enrichment: %d, want %d", got, want)
	}
	for in, want := range map[string]int64{"auto": def.EffectiveMemoryLimit(), "off": 0, "64MiB": 64 << 20, "100000000": 100000000} {
		c, err := load("pipeline: {memory_limit: " + in + "}\n")
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := c.EffectiveMemoryLimit(); got != want {
			t.Errorf("%s: %d, want %d", in, got, want)
		}
		if in != "auto" && (c.AutoMemoryLimit() || c.MemoryLimitFor(8192) != want) {
			t.Errorf("%s: follows the in-flight bound (%d for 8192 events)", in, c.MemoryLimitFor(8192))
		}
	}
	for _, in := range []string{"lots", "-5MiB", "-7"} {
		c, err := load("pipeline: {memory_limit: " + in + "}\n")
		if err == nil {
			err = c.Validate(known, formats)
		}
		if err == nil || !strings.Contains(err.Error(), "pipeline.memory_limit") || !strings.Contains(err.Error(), "auto, off") {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// pipeline.max_procs: 1 by default, 0 for every core, a count otherwise.
func TestMaxProcs(t *testing.T) {
	load := func(pipeline string) (Config, error) {
		return Load(write(t, "inputs:\n  - paths: [/a]\noutputs: {stdout: {}}\n"+pipeline), nil)
	}
	for in, want := range map[string]int{"": 1, "pipeline: {max_procs: 0}\n": 0, "pipeline: {max_procs: 4}\n": 4} {
		c, err := load(in)
		if err == nil {
			err = c.Validate(known, formats)
		}
		if err != nil || c.Pipeline.MaxProcs != want {
			t.Errorf("%q: %d, %v; want %d", in, c.Pipeline.MaxProcs, err, want)
		}
	}
	for _, in := range []string{"-1", "all", "100000"} {
		c, err := load("pipeline: {max_procs: " + in + "}\n")
		if err == nil {
			err = c.Validate(known, formats)
		}
		if err == nil || !strings.Contains(err.Error(), "pipeline.max_procs") {
			t.Errorf("%s: %v", in, err)
		}
	}
}
