// Package config owns the agent's configuration: plain structs with koanf
// tags, Default(), loading a YAML file (koanf) with AUDITLOGIN_* environment
// overrides of any key, strict decoding (an unknown key is an error: a typo
// must not silently disable an output), and Validate, whose every error names
// the field path and what is expected.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// Config is the whole configuration. Top-level names are stable across
// releases: inputs, registry, outputs.
type Config struct {
	Inputs     []Input        `koanf:"inputs"`
	Registry   Registry       `koanf:"registry"`
	Outputs    Outputs        `koanf:"outputs"`
	DeadLetter DeadLetter     `koanf:"dead_letter"`
	Pipeline   Pipeline       `koanf:"pipeline"`
	Tail       Tail           `koanf:"tail"`
	Fields     map[string]any `koanf:"fields"`
	// EventSchema is the shape events are shipped in: auditlogin (the
	// documented seed fields), ecs (Elastic Common Schema) or both.
	EventSchema string      `koanf:"event_schema"`
	Log         Log         `koanf:"log"`
	Metrics     Metrics     `koanf:"metrics"`
	Enrich      Enrich      `koanf:"enrich"`
	Spool       Spool       `koanf:"spool"`
	Processors  []Processor `koanf:"processors"`
}

// Processor is one step of processors:, applied to each event in order
// after enrichment; exactly one of its keys is set.
type Processor struct {
	DropEvent *DropEvent `koanf:"drop_event"`
	AddFields *AddFields `koanf:"add_fields"`
	Route     *Route     `koanf:"route"`
}

// DropEvent drops the events its condition matches (not shipped, counted).
type DropEvent struct {
	When *Condition `koanf:"when"`
}

// AddFields adds static fields (fields.NAME) to the events its condition
// matches (all when it has none).
type AddFields struct {
	Fields map[string]any `koanf:"fields"`
	When   *Condition     `koanf:"when"`
}

// Route sends the events its condition matches to another Kafka topic
// and/or Elasticsearch index than the output's.
type Route struct {
	Topic string     `koanf:"topic"`
	Index string     `koanf:"index"`
	When  *Condition `koanf:"when"`
}

// Condition is a plain match on event fields: every key set must hold.
// equals: field → value (fields.NAME for static fields; "" matches null);
// network: field (ip) → CIDRs, any of them; has_tags: every tag present;
// and/or/not combine conditions.
type Condition struct {
	Equals  map[string]string   `koanf:"equals"`
	Network map[string][]string `koanf:"network"`
	HasTags []string            `koanf:"has_tags"`
	And     []Condition         `koanf:"and"`
	Or      []Condition         `koanf:"or"`
	Not     *Condition          `koanf:"not"`
}

// Spool configures the outputs' on-disk buffers: an output that is down,
// or behind another output, gets what it cannot take now written to
// path/<output>/ (at most max_bytes each), so that reading and the other
// outputs go on. When the spool is full, reading waits (nothing is dropped).
type Spool struct {
	Enabled  bool     `koanf:"enabled"`
	Path     string   `koanf:"path"`
	MaxBytes ByteSize `koanf:"max_bytes"`
}

// Enrich configures the tags added to events.
type Enrich struct {
	Enabled    bool       `koanf:"enabled"`
	BruteForce BruteForce `koanf:"brute_force"`
	NewSource  NewSource  `koanf:"new_source"`
}

// BruteForce: at least Threshold failed logins from one ip, or for one user,
// within Window.
type BruteForce struct {
	Threshold int           `koanf:"threshold"`
	Window    time.Duration `koanf:"window"`
}

// NewSource: tag the first login of an account from an address on a server.
type NewSource struct {
	Enabled    bool   `koanf:"enabled"`
	Path       string `koanf:"path"`
	MaxEntries int    `koanf:"max_entries"`
}

// Metrics configures the Prometheus and health endpoint (off when listen is "").
type Metrics struct {
	Listen      string   `koanf:"listen"`
	MaxLagBytes ByteSize `koanf:"max_lag_bytes"`
	Pprof       bool     `koanf:"pprof"` // serve Go's /debug/pprof/ profiles on the same listener
}

// Input is one set of files of one format.
type Input struct {
	Paths    []string `koanf:"paths"`
	Format   string   `koanf:"format"`
	Timezone string   `koanf:"timezone"`
	MyHost   string   `koanf:"myhost"`
	StartAt  string   `koanf:"start_at"`
	Logouts  bool     `koanf:"logouts"`
	Pasted   bool     `koanf:"pasted"`
}

// Registry is where committed offsets are kept.
type Registry struct {
	Path          string        `koanf:"path"`
	FlushInterval time.Duration `koanf:"flush_interval"`
	CleanAfter    time.Duration `koanf:"clean_after"`
}

// Outputs enables an output by its presence (`stdout: {}`).
type Outputs struct {
	Stdout *Stdout `koanf:"stdout"`
	File   *File   `koanf:"file"`
	Kafka  *Kafka  `koanf:"kafka"`
	// Elasticsearch is the Elasticsearch output (and what setup installs).
	Elasticsearch *Elasticsearch `koanf:"elasticsearch"`
}

// Elasticsearch is the Elasticsearch output.
type Elasticsearch struct {
	Hosts         []string          `koanf:"hosts"`
	Username      string            `koanf:"username"`
	Password      string            `koanf:"password"`
	PasswordEnv   string            `koanf:"password_env"`
	PasswordFile  string            `koanf:"password_file"`
	APIKey        string            `koanf:"api_key"`
	APIKeyEnv     string            `koanf:"api_key_env"`
	APIKeyFile    string            `koanf:"api_key_file"`
	TLS           *TLS              `koanf:"tls"`
	Index         string            `koanf:"index"`
	DataStream    bool              `koanf:"data_stream"`
	Pipeline      string            `koanf:"pipeline"`
	BulkMaxEvents int               `koanf:"bulk_max_events"`
	BulkMaxBytes  ByteSize          `koanf:"bulk_max_bytes"`
	Workers       int               `koanf:"workers"`
	FlushInterval time.Duration     `koanf:"flush_interval"`
	Timeout       time.Duration     `koanf:"timeout"`
	RetryInitial  time.Duration     `koanf:"retry_initial"`
	RetryMax      time.Duration     `koanf:"retry_max"`
	Headers       map[string]string `koanf:"headers"`
	TemplateName  string            `koanf:"template_name"`
	ILMPolicy     string            `koanf:"ilm_policy"`
	DeleteAfter   string            `koanf:"ilm_delete_after"`
}

// Kafka is the Kafka output.
type Kafka struct {
	Brokers         []string      `koanf:"brokers"`
	Topic           string        `koanf:"topic"`
	Key             string        `koanf:"key"`
	Headers         []string      `koanf:"headers"` // message headers: event fields, or hostname (the agent's); none by default
	Compression     string        `koanf:"compression"`
	RequiredAcks    string        `koanf:"required_acks"`
	BatchSize       int           `koanf:"batch_size"`
	BatchBytes      ByteSize      `koanf:"batch_bytes"`
	BatchTimeout    time.Duration `koanf:"batch_timeout"` // accepted, unused: requests are sent as soon as a batch is ready
	Workers         int           `koanf:"workers"`
	MaxMessageBytes ByteSize      `koanf:"max_message_bytes"`
	Timeout         time.Duration `koanf:"timeout"`
	RetryInitial    time.Duration `koanf:"retry_initial"`
	RetryMax        time.Duration `koanf:"retry_max"`
	ClientID        string        `koanf:"client_id"`
	AutoCreateTopic *bool         `koanf:"auto_create_topic"`
	TLS             *TLS          `koanf:"tls"`
	SASL            *SASL         `koanf:"sasl"`
}

// TLS configures a client's TLS; present (even empty: system CAs) = on.
type TLS struct {
	CAFile             string `koanf:"ca_file"`
	CAFingerprint      string `koanf:"ca_fingerprint"` // Elasticsearch: SHA-256 of the server certificate, hex
	CertFile           string `koanf:"cert_file"`
	KeyFile            string `koanf:"key_file"`
	ServerName         string `koanf:"server_name"`
	InsecureSkipVerify bool   `koanf:"insecure_skip_verify"`
}

// SASL configures authentication; the password comes from one of password,
// password_env (a variable's name) or password_file.
type SASL struct {
	Mechanism    string `koanf:"mechanism"`
	Username     string `koanf:"username"`
	Password     string `koanf:"password"`
	PasswordEnv  string `koanf:"password_env"`
	PasswordFile string `koanf:"password_file"`
}

// Stdout has no settings.
type Stdout struct{}

// File is the NDJSON file output.
type File struct {
	Path     string   `koanf:"path"`
	MaxSize  ByteSize `koanf:"max_size"`
	MaxFiles int      `koanf:"max_files"`
}

// DeadLetter is the file of rejected records.
type DeadLetter struct {
	Path     string   `koanf:"path"`
	MaxSize  ByteSize `koanf:"max_size"`
	MaxFiles int      `koanf:"max_files"`
}

// Pipeline tunes batching, back-pressure, retries and shutdown.
type Pipeline struct {
	BatchSize        int           `koanf:"batch_size"`
	FlushInterval    time.Duration `koanf:"flush_interval"`
	MaxInFlight      int           `koanf:"max_in_flight"` // 0: 4 × batch_size
	MaxInFlightBytes ByteSize      `koanf:"max_in_flight_bytes"`
	ShutdownTimeout  time.Duration `koanf:"shutdown_timeout"`
	RetryInitial     time.Duration `koanf:"retry_initial"`
	RetryMax         time.Duration `koanf:"retry_max"`
	// MemoryLimit is the soft limit on the Go runtime's memory
	// (debug.SetMemoryLimit): auto (the default) derives it from the
	// bounds above and the enrichment tables (following the in-flight
	// bound as adaptive concurrency raises and lowers it), off leaves Go's
	// default, or a size. The GOMEMLIMIT environment variable, when set,
	// wins.
	MemoryLimit MemoryLimit `koanf:"memory_limit"`
	// MaxProcs is how many cores run the agent's Go code at once
	// (GOMAXPROCS): 1 by default, as a login shipper beside a database
	// should take at most one core from it; 0 for every core. The
	// GOMAXPROCS environment variable, when set, wins.
	MaxProcs int `koanf:"max_procs"`
	// AdaptiveConcurrency lets each network output send up to four times
	// its workers' requests at once while the destination's round trip
	// stays flat (a remote broker or cluster), the in-flight bound growing
	// by a batch for each (max_in_flight_bytes still holds); it stays at
	// the configured workers for a destination that answers later the more
	// it is sent. On by default.
	AdaptiveConcurrency bool `koanf:"adaptive_concurrency"`
}

// MemoryLimit is pipeline.memory_limit: 0 for auto (a plain 0 in the file
// too), -1 for off, or bytes.
type MemoryLimit int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MemoryLimit) UnmarshalText(text []byte) error {
	switch s := strings.TrimSpace(string(text)); s {
	case "auto", "":
		*m = 0
		return nil
	case "off":
		*m = -1
		return nil
	}
	var b ByteSize
	if b.UnmarshalText(text) != nil || b == 0 {
		return errors.New("expected auto, off, or a size such as 64MiB")
	}
	*m = MemoryLimit(b)
	return nil
}

// Base of the auto memory limit: what an agent holds whatever its bounds
// (runtime, stacks, clients' buffers, pools), plus room for the garbage
// collector to work without running all the time. Measured in
// bench/kafka.sh's default run: a live heap of 5-7 MB with the seen-set
// full and every in-flight event held, the runtime's own memory (GC
// metadata, stacks, spans) about 4 MB. At 10 MiB (19.3 MiB in all with the
// defaults) the collector runs 66 times for a million lines instead of 45
// at 12 MiB, still 1 % of the CPU (gctrace), and the peak RSS is 2 MB
// lower: 6 interleaved rounds, 27.5-27.9 MB against 29.4-30.3 MB at the
// same CPU (2.15-3.46 against 2.18-3.60 CPU-s); 17 MiB in all took more CPU
// in 4 of the 6.
const memoryLimitBase = 10 << 20

// EffectiveMemoryLimit is the soft limit to set on the Go runtime at
// start, or 0 to leave Go's default: MemoryLimitFor the configured
// in-flight bound.
func (c *Config) EffectiveMemoryLimit() int64 { return c.MemoryLimitFor(0) }

// AutoMemoryLimit reports whether the memory limit is auto, and so
// follows the in-flight bound (MemoryLimitFor) as adaptive concurrency
// changes it.
func (c *Config) AutoMemoryLimit() bool { return c.Pipeline.MemoryLimit == 0 }

// MemoryLimitFor is the soft limit for an in-flight bound of events (0:
// max_in_flight, as at start; adaptive concurrency raises it toward a
// distant destination, up to four times, and lowers it back). Auto is a
// sum of what the configuration bounds, each counted generously: twice the
// events in flight (the smaller of events × 1 KiB, an event's heap size
// with its encoding, and max_in_flight_bytes: what is in flight plus what
// was just released), the new-source set (about 24 bytes an entry) and the
// brute-force table (3.2 MB: it holds about the keys its window holds, 64
// bytes each with the default threshold; a flood of 50,000 sources failing
// within the window fills it). It is a soft limit: a heap above it only
// makes the collector run more often (Go caps that at half the CPU), never
// fails an allocation. An explicit limit, or off, is the same whatever the
// bound.
func (c *Config) MemoryLimitFor(events int) int64 {
	switch {
	case c.Pipeline.MemoryLimit < 0:
		return 0
	case c.Pipeline.MemoryLimit > 0:
		return int64(c.Pipeline.MemoryLimit)
	}
	n := int64(events)
	if n <= 0 {
		n = int64(c.Pipeline.MaxInFlight)
	}
	if n <= 0 {
		n = 4 * int64(c.Pipeline.BatchSize)
	}
	inFlight := min(n<<10, int64(c.Pipeline.MaxInFlightBytes))
	limit := memoryLimitBase + 2*inFlight
	if c.Enrich.Enabled {
		limit += 100000 * 32
		if c.Enrich.NewSource.Enabled {
			limit += int64(c.Enrich.NewSource.MaxEntries) * 24
		}
	}
	return limit
}

// Tail tunes how files are followed.
type Tail struct {
	ScanInterval     time.Duration `koanf:"scan_interval"`
	PollInterval     time.Duration `koanf:"poll_interval"`
	RotateWait       time.Duration `koanf:"rotate_wait"`
	CloseInactive    time.Duration `koanf:"close_inactive"`
	MaxOpenFiles     int           `koanf:"max_open_files"` // 0: RLIMIT_NOFILE less 64
	IdleAfter        time.Duration `koanf:"idle_after"`
	MaxLineBytes     ByteSize      `koanf:"max_line_bytes"`
	FingerprintBytes int           `koanf:"fingerprint_bytes"`
}

// Log configures the agent's own logs.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// Default returns the defaults documented in examples/auditlogin.yaml.
func Default() Config {
	return Config{
		Registry: Registry{Path: "/var/lib/auditlogin/registry.json", FlushInterval: time.Second, CleanAfter: 72 * time.Hour},
		Pipeline: Pipeline{BatchSize: 512, FlushInterval: 500 * time.Millisecond, MaxInFlightBytes: 8 << 20, AdaptiveConcurrency: true,
			ShutdownTimeout: 10 * time.Second, RetryInitial: 250 * time.Millisecond, RetryMax: 5 * time.Second, MaxProcs: 1},
		Tail: Tail{ScanInterval: time.Second, PollInterval: 250 * time.Millisecond, RotateWait: 5 * time.Second,
			CloseInactive: 5 * time.Minute, IdleAfter: 10 * time.Second, MaxLineBytes: 1 << 20, FingerprintBytes: 1024},
		Log:     Log{Level: "info", Format: "auto"},
		Metrics: Metrics{MaxLagBytes: 64 << 20},
		Enrich: Enrich{Enabled: true, BruteForce: BruteForce{Threshold: 5, Window: 5 * time.Minute},
			NewSource: NewSource{Enabled: true, MaxEntries: 100000}},
		Spool:       Spool{Enabled: true, MaxBytes: 1 << 30},
		EventSchema: "auditlogin",
	}
}

// ScalarField reports whether v can be a static field's value (fields:,
// add_fields): a string, boolean or number, kept with its type.
func ScalarField(v any) bool {
	_, ok := auditlogin.FieldValue(v)
	return ok
}

func inputDefaults(in *Input) {
	if in.Format == "" {
		in.Format = "audit_login"
	}
	if in.Timezone == "" {
		in.Timezone = "Local"
	}
	if in.StartAt == "" {
		in.StartAt = "beginning"
	}
}

func (c *Config) fillDerived() {
	for i := range c.Inputs {
		inputDefaults(&c.Inputs[i])
	}
	if c.Outputs.File != nil {
		if c.Outputs.File.MaxSize == 0 {
			c.Outputs.File.MaxSize = 100 << 20
		}
		if c.Outputs.File.MaxFiles == 0 {
			c.Outputs.File.MaxFiles = 7
		}
	}
	if k := c.Outputs.Kafka; k != nil {
		def := map[*string]string{&k.Key: "id", &k.Compression: "none", &k.RequiredAcks: "all", &k.ClientID: "auditlogin"}
		for p, v := range def {
			if *p == "" {
				*p = v
			}
		}
		if k.BatchSize == 0 {
			k.BatchSize = 1000
		}
		if k.BatchBytes == 0 {
			k.BatchBytes = 1 << 20
		}
		if k.Workers == 0 {
			k.Workers = 4
		}
		if k.MaxMessageBytes == 0 {
			k.MaxMessageBytes = 1000000
		}
		if k.Timeout == 0 {
			k.Timeout = 10 * time.Second
		}
		if k.RetryInitial == 0 {
			k.RetryInitial = 250 * time.Millisecond
		}
		if k.RetryMax == 0 {
			k.RetryMax = 5 * time.Second
		}
		if k.AutoCreateTopic == nil {
			t := true
			k.AutoCreateTopic = &t
		}
	}
	if e := c.Outputs.Elasticsearch; e != nil {
		if e.Index == "" {
			e.Index = "auditlogin-%{+yyyy.MM.dd}"
		}
		if e.BulkMaxEvents == 0 {
			e.BulkMaxEvents = 1000
		}
		if e.BulkMaxBytes == 0 {
			e.BulkMaxBytes = 5 << 20
		}
		if e.Workers == 0 {
			e.Workers = 4
		}
		if e.FlushInterval == 0 {
			e.FlushInterval = time.Second
		}
		if e.Timeout == 0 {
			e.Timeout = 30 * time.Second
		}
		if e.RetryInitial == 0 {
			e.RetryInitial = 250 * time.Millisecond
		}
		if e.RetryMax == 0 {
			e.RetryMax = 5 * time.Second
		}
		if e.TemplateName == "" {
			e.TemplateName = "auditlogin"
		}
		if e.ILMPolicy == "" {
			e.ILMPolicy = "auditlogin"
		}
		if e.DeleteAfter == "" {
			e.DeleteAfter = "90d"
		}
	}
	if c.DeadLetter.Path == "" && c.Registry.Path != "" {
		c.DeadLetter.Path = filepath.Join(filepath.Dir(c.Registry.Path), "dead-letter.ndjson")
	}
	if c.Spool.Path == "" && c.Registry.Path != "" {
		c.Spool.Path = filepath.Join(filepath.Dir(c.Registry.Path), "spool")
	}
	if c.Enrich.NewSource.Path == "" && c.Registry.Path != "" {
		c.Enrich.NewSource.Path = filepath.Join(filepath.Dir(c.Registry.Path), "seen-sources.json")
	}
	if c.DeadLetter.MaxSize == 0 {
		c.DeadLetter.MaxSize = 100 << 20
	}
	if c.DeadLetter.MaxFiles == 0 {
		c.DeadLetter.MaxFiles = 3
	}
}

// SearchPaths are where the agent looks for a config file when none is given.
var SearchPaths = []string{"./auditlogin.yaml", "/etc/auditlogin/auditlogin.yaml"}

// Find returns the first config file of SearchPaths that exists.
func Find() (string, bool) {
	for _, p := range SearchPaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, true
		}
	}
	return "", false
}

// EnvPrefix starts every environment override: AUDITLOGIN_OUTPUTS__FILE__PATH
// sets outputs.file.path; AUDITLOGIN_INPUTS__0__PATHS='["/a.log"]' sets the
// first input's paths. "__" separates keys (keys themselves hold "_"), a
// number indexes a list, and the value is read as YAML (so lists, numbers and
// booleans work; anything else is a string). A variable with no "__" is an
// override only if it names a top-level key; AUDITLOGIN_CONFIG and other
// single-word variables are left alone.
const EnvPrefix = "AUDITLOGIN_"

// Errors is every problem found in a configuration.
type Errors []string

func (e Errors) Error() string {
	return "invalid configuration:\n  " + strings.Join(e, "\n  ")
}

// Load reads the YAML file at path (none when path is ""), applies the
// environment overrides in environ, decodes strictly over Default() and
// fills derived defaults. It does not Validate.
func Load(path string, environ []string) (Config, error) {
	raw := map[string]any{}
	if path != "" {
		k := koanf.New("\x00") // keys are never split: field names may hold dots
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("reading config %s: %w", path, err)
		}
		raw = k.Raw()
	}
	return decode(raw, environ)
}

// LoadYAML is Load for a configuration held in memory (the built-in demo).
func LoadYAML(data []byte, environ []string) (Config, error) {
	k := koanf.New("\x00")
	if err := k.Load(bytesProvider(data), yaml.Parser()); err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	return decode(k.Raw(), environ)
}

type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytes provider needs a parser")
}

func decode(raw map[string]any, environ []string) (Config, error) {
	var errs Errors
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		rest := strings.TrimPrefix(name, EnvPrefix)
		keys := strings.Split(strings.ToLower(rest), "__")
		// An override names a key path (AUDITLOGIN_OUTPUTS__FILE__PATH) or a
		// top-level key (AUDITLOGIN_FIELDS). Other AUDITLOGIN_* variables
		// (AUDITLOGIN_CONFIG, AUDITLOGIN_E2E, ...) are not configuration.
		if len(keys) == 1 && !topLevel[keys[0]] {
			continue
		}
		if _, err := setPath(raw, keys, envValue(val)); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
		}
	}
	cfg := Default()
	unknownKeys("", raw, reflect.TypeOf(cfg), &errs)
	if len(errs) > 0 {
		sort.Strings(errs)
		return Config{}, errs
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:          "koanf",
		Result:           &cfg,
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc()),
	})
	if err != nil {
		return Config{}, err
	}
	if err := dec.Decode(raw); err != nil {
		return Config{}, decodeErrors(err)
	}
	cfg.fillDerived()
	return cfg, nil
}

// topLevel are the configuration's top-level keys.
var topLevel = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		m[t.Field(i).Tag.Get("koanf")] = true
	}
	return m
}()

var quotedField = regexp.MustCompile(`^'([^']*)' (.*)$`)

// decodeErrors turns mapstructure's messages into "path: problem" lines.
func decodeErrors(err error) Errors {
	var out Errors
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		msg := e.Error()
		if i := strings.LastIndex(msg, "error(s):\n\n"); i >= 0 {
			msg = msg[i+len("error(s):\n\n"):]
		}
		for _, line := range strings.Split(msg, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
			if line == "" {
				continue
			}
			if m := quotedField.FindStringSubmatch(line); m != nil {
				line = m[1] + ": " + m[2]
			}
			out = append(out, line)
		}
	}
	walk(err)
	if len(out) == 0 {
		out = Errors{err.Error()}
	}
	return out
}

func envValue(s string) any {
	var v any
	if err := yamlv3.Unmarshal([]byte(s), &v); err != nil || v == nil {
		return s
	}
	switch v.(type) {
	case map[string]any, []any, bool, int, float64:
		return v
	}
	return s
}

// setPath returns node with node[keys...] = v, creating sections, and
// indexing (or appending to) lists where a key is a number.
func setPath(node any, keys []string, v any) (any, error) {
	if len(keys) == 0 {
		return v, nil
	}
	k := keys[0]
	if idx, err := strconv.Atoi(k); err == nil {
		list, ok := node.([]any)
		if node != nil && !ok {
			return node, fmt.Errorf("index %d given for something that is not a list", idx)
		}
		if idx < 0 || idx > len(list) {
			return node, fmt.Errorf("list has %d item(s); index %d must be at most %d", len(list), idx, len(list))
		}
		if idx == len(list) {
			list = append(list, nil)
		}
		child, err := setPath(list[idx], keys[1:], v)
		list[idx] = child
		return list, err
	}
	m, ok := node.(map[string]any)
	if node == nil {
		m = map[string]any{}
	} else if !ok {
		return node, fmt.Errorf("key %q given for something that is not a section", k)
	}
	child, err := setPath(m[k], keys[1:], v)
	m[k] = child
	return m, err
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// unknownKeys reports every key of raw that t has no field for.
func unknownKeys(path string, v any, t reflect.Type, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(time.Duration(0)) {
			return
		}
		m, ok := v.(map[string]any)
		if !ok {
			return // the decoder reports the type
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if tag := f.Tag.Get("koanf"); tag != "" && tag != "-" {
				fields[tag] = f.Type
			}
		}
		for k, sub := range m {
			ft, ok := fields[k]
			if !ok {
				names := make([]string, 0, len(fields))
				for n := range fields {
					names = append(names, n)
				}
				sort.Strings(names)
				expect := "this section takes no keys"
				if len(names) > 0 {
					expect = "expected one of: " + strings.Join(names, ", ")
				}
				*errs = append(*errs, fmt.Sprintf("%s: unknown key (%s)", join(path, k), expect))
				continue
			}
			unknownKeys(join(path, k), sub, ft, errs)
		}
	case reflect.Slice:
		if l, ok := v.([]any); ok {
			for i, e := range l {
				unknownKeys(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), errs)
			}
		}
	}
}

// Validate checks cfg. knownFormat says whether a format name is supported;
// formats lists them for the message.
func (c *Config) Validate(knownFormat func(string) bool, formats []string) error {
	var errs Errors
	add := func(path, format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	if len(c.Inputs) == 0 {
		add("inputs", "at least one input is required (a list of {paths, format})")
	}
	for i, in := range c.Inputs {
		p := fmt.Sprintf("inputs[%d]", i)
		if len(in.Paths) == 0 {
			add(p+".paths", "at least one path or glob is required")
		}
		for j, g := range in.Paths {
			if g == "" {
				add(fmt.Sprintf("%s.paths[%d]", p, j), "empty path")
			} else if _, err := filepath.Match(g, ""); err != nil {
				add(fmt.Sprintf("%s.paths[%d]", p, j), "bad glob %q: %v", g, err)
			}
		}
		if !knownFormat(in.Format) {
			add(p+".format", "unknown format %q (expected one of: %s)", in.Format, strings.Join(formats, ", "))
		}
		if _, err := LoadLocation(in.Timezone); err != nil {
			add(p+".timezone", "%v (expected an IANA zone name such as Europe/Berlin, or Local, or UTC)", err)
		}
		if in.StartAt != "beginning" && in.StartAt != "end" {
			add(p+".start_at", "%q (expected beginning or end)", in.StartAt)
		}
	}
	if c.Registry.Path == "" {
		add("registry.path", "required (where committed offsets are kept)")
	}
	if c.Registry.FlushInterval <= 0 {
		add("registry.flush_interval", "must be a positive duration such as 1s")
	}
	if c.Outputs.Stdout == nil && c.Outputs.File == nil && c.Outputs.Kafka == nil && c.Outputs.Elasticsearch == nil {
		add("outputs", "no output configured (expected at least one of: stdout, file, kafka, elasticsearch)")
	}
	if e := c.Outputs.Elasticsearch; e != nil {
		if len(e.Hosts) == 0 {
			add("outputs.elasticsearch.hosts", "at least one URL is required, such as http://es-1:9200")
		}
		for i, h := range e.Hosts {
			if !strings.HasPrefix(h, "http://") && !strings.HasPrefix(h, "https://") {
				add(fmt.Sprintf("outputs.elasticsearch.hosts[%d]", i), "%q (expected a URL such as https://es-1:9200)", h)
			}
		}
		count := func(v ...string) int {
			n := 0
			for _, x := range v {
				if x != "" {
					n++
				}
			}
			return n
		}
		if count(e.Password, e.PasswordEnv, e.PasswordFile) > 1 {
			add("outputs.elasticsearch", "set only one of password, password_env, password_file")
		}
		if count(e.APIKey, e.APIKeyEnv, e.APIKeyFile) > 1 {
			add("outputs.elasticsearch", "set only one of api_key, api_key_env, api_key_file")
		}
		if e.Username != "" && count(e.APIKey, e.APIKeyEnv, e.APIKeyFile) > 0 {
			add("outputs.elasticsearch", "set either username/password or an api key, not both")
		}
		if e.BulkMaxEvents <= 0 {
			add("outputs.elasticsearch.bulk_max_events", "must be positive")
		}
		if e.Workers < 0 || e.Workers > 64 {
			add("outputs.elasticsearch.workers", "%d (expected 1 to 64 bulk requests in flight)", e.Workers)
		}
		if e.RetryMax < e.RetryInitial {
			add("outputs.elasticsearch.retry_max", "must be at least outputs.elasticsearch.retry_initial")
		}
		if e.TLS != nil && (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
			add("outputs.elasticsearch.tls", "cert_file and key_file go together")
		}
	}
	if k := c.Outputs.Kafka; k != nil && k.TLS != nil && k.TLS.CAFingerprint != "" {
		add("outputs.kafka.tls.ca_fingerprint", "not supported for kafka (use ca_file)")
	}
	if k := c.Outputs.Kafka; k != nil {
		if len(k.Brokers) == 0 {
			add("outputs.kafka.brokers", "at least one host:port is required")
		}
		for i, b := range k.Brokers {
			if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
				add(fmt.Sprintf("outputs.kafka.brokers[%d]", i), "%q (expected host:port)", b)
			}
		}
		if k.Topic == "" {
			add("outputs.kafka.topic", "required: a name, or a template such as mysql-logins-${myhost}")
		}
		oneOf := func(path, v string, allowed ...string) {
			for _, a := range allowed {
				if v == a {
					return
				}
			}
			add(path, "%q (expected %s)", v, strings.Join(allowed, ", "))
		}
		if !auditlogin.ValidField(k.Key) {
			add("outputs.kafka.key", "unknown field %q (expected %s or fields.NAME)", k.Key, strings.Join(auditlogin.FieldNames, ", "))
		}
		seenHeader := map[string]bool{}
		for i, h := range k.Headers {
			switch {
			case h != "hostname" && !auditlogin.ValidField(h):
				add(fmt.Sprintf("outputs.kafka.headers[%d]", i), "unknown field %q (expected hostname, the agent's host name, or an event field: %s, fields.NAME)", h, strings.Join(auditlogin.FieldNames, ", "))
			case seenHeader[h]:
				add(fmt.Sprintf("outputs.kafka.headers[%d]", i), "%q twice", h)
			}
			seenHeader[h] = true
		}
		oneOf("outputs.kafka.compression", k.Compression, "none", "gzip", "snappy", "lz4", "zstd")
		oneOf("outputs.kafka.required_acks", k.RequiredAcks, "all", "one", "none")
		if k.BatchSize <= 0 {
			add("outputs.kafka.batch_size", "must be positive")
		}
		if k.Workers < 0 || k.Workers > 64 {
			add("outputs.kafka.workers", "%d (expected 1 to 64 produce calls in flight)", k.Workers)
		}
		if k.BatchBytes < 1024 {
			add("outputs.kafka.batch_bytes", "%d (expected at least 1KiB)", k.BatchBytes)
		}
		if k.RetryMax < k.RetryInitial {
			add("outputs.kafka.retry_max", "must be at least outputs.kafka.retry_initial")
		}
		if k.TLS != nil && (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
			add("outputs.kafka.tls", "cert_file and key_file go together")
		}
		if a := k.SASL; a != nil {
			oneOf("outputs.kafka.sasl.mechanism", strings.ToLower(a.Mechanism), "plain", "scram-sha-256", "scram-sha-512")
			if a.Username == "" {
				add("outputs.kafka.sasl.username", "required")
			}
			n := 0
			for _, v := range []string{a.Password, a.PasswordEnv, a.PasswordFile} {
				if v != "" {
					n++
				}
			}
			if n != 1 {
				add("outputs.kafka.sasl", "set exactly one of password, password_env, password_file")
			}
		}
	}
	if f := c.Outputs.File; f != nil {
		if f.Path == "" {
			add("outputs.file.path", "required (the NDJSON file to write)")
		}
		if f.MaxSize < 0 {
			add("outputs.file.max_size", "must not be negative")
		}
		if f.MaxFiles < 0 {
			add("outputs.file.max_files", "must not be negative")
		}
	}
	if c.DeadLetter.Path == "" {
		add("dead_letter.path", "required")
	}
	pl := c.Pipeline
	if pl.BatchSize <= 0 {
		add("pipeline.batch_size", "must be positive")
	}
	if pl.MaxInFlightBytes < 64<<10 {
		add("pipeline.max_in_flight_bytes", "%d (expected at least 64KiB)", pl.MaxInFlightBytes)
	}
	if pl.MaxInFlight < 0 || (pl.MaxInFlight > 0 && pl.MaxInFlight < 2*pl.BatchSize) {
		add("pipeline.max_in_flight", "%d (expected 0 for four batches, or at least twice pipeline.batch_size: %d)", pl.MaxInFlight, 2*pl.BatchSize)
	}
	if pl.MaxProcs < 0 || pl.MaxProcs > 4096 {
		add("pipeline.max_procs", "%d (expected 0 for every core, or 1 to 4096)", pl.MaxProcs)
	}
	if pl.MemoryLimit < -1 {
		add("pipeline.memory_limit", "%d (expected auto, off, or a size such as 64MiB)", pl.MemoryLimit)
	}
	for name, d := range map[string]time.Duration{
		"pipeline.flush_interval": pl.FlushInterval, "pipeline.shutdown_timeout": pl.ShutdownTimeout,
		"pipeline.retry_initial": pl.RetryInitial, "pipeline.retry_max": pl.RetryMax,
		"tail.scan_interval": c.Tail.ScanInterval, "tail.poll_interval": c.Tail.PollInterval,
		"tail.rotate_wait": c.Tail.RotateWait, "tail.close_inactive": c.Tail.CloseInactive, "tail.idle_after": c.Tail.IdleAfter,
	} {
		if d <= 0 {
			add(name, "must be a positive duration such as 1s")
		}
	}
	if pl.RetryMax < pl.RetryInitial {
		add("pipeline.retry_max", "must be at least pipeline.retry_initial")
	}
	if c.Tail.MaxLineBytes < 1024 {
		add("tail.max_line_bytes", "must be at least 1KiB")
	}
	if c.Tail.FingerprintBytes < 16 || c.Tail.FingerprintBytes > 64<<10 {
		add("tail.fingerprint_bytes", "must be between 16 and 65536")
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			add("metrics.listen", "%q (expected host:port, such as 127.0.0.1:9145)", l)
		}
	}
	if c.Enrich.BruteForce.Threshold < 1 {
		add("enrich.brute_force.threshold", "must be at least 1")
	}
	if c.Enrich.BruteForce.Window <= 0 {
		add("enrich.brute_force.window", "must be a positive duration such as 5m")
	}
	if c.Enrich.NewSource.MaxEntries < 1 {
		add("enrich.new_source.max_entries", "must be at least 1")
	}
	if c.Metrics.MaxLagBytes < 0 {
		add("metrics.max_lag_bytes", "must not be negative")
	}
	if c.Spool.Enabled {
		if c.Spool.MaxBytes < 1<<20 {
			add("spool.max_bytes", "%d is too small (expected at least 1MiB, such as 1GiB; or spool.enabled: false)", c.Spool.MaxBytes)
		}
		if c.Spool.Path == "" {
			add("spool.path", "a directory is required (default: spool beside the registry)")
		}
	}
	switch c.EventSchema {
	case "auditlogin", "ecs", "both":
	default:
		add("event_schema", "%q (expected auditlogin, ecs or both)", c.EventSchema)
	}
	for _, k := range sortedKeys(c.Fields) {
		if !ScalarField(c.Fields[k]) {
			add("fields."+k, "%v (expected a string, number or boolean)", describe(c.Fields[k]))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q (expected debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		add("log.format", "%q (expected auto, text or json)", c.Log.Format)
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// LoadLocation is time.LoadLocation that also takes "" and "Local".
func LoadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return time.Local, nil
	}
	return time.LoadLocation(name)
}

// ByteSize is a size in bytes, written as a number or with a unit:
// 1024, 10KB, 64KiB, 100MiB, 1GiB (KB = 1000, KiB = 1024).
type ByteSize int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New("expected a size such as 1048576, 64KiB, 100MiB or 1GiB")
	}
	*b = ByteSize(n * mul)
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describe names a value that is not a scalar, for an error.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%v", v)
}
