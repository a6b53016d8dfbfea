package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/enrich"
	"github.com/auditlogin/auditlogin/internal/clientcfg"
	"github.com/auditlogin/auditlogin/metrics"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch"
	"github.com/auditlogin/auditlogin/outputs/file"
	"github.com/auditlogin/auditlogin/outputs/kafka"
	"github.com/auditlogin/auditlogin/outputs/stdout"
	"github.com/auditlogin/auditlogin/parser"
	"github.com/auditlogin/auditlogin/processors"
	"github.com/auditlogin/auditlogin/spool"
	"github.com/auditlogin/auditlogin/tailer"
)

//go:embed demo.yaml
var demoYAML []byte

func demoConfig() (config.Config, error) { return config.LoadYAML(demoYAML, os.Environ()) }

func knownFormat(f string) bool { return f == parser.FormatAuto || parser.Known(f) }
func formatNames() []string     { return append(parser.Formats(), parser.FormatAuto) }

// detector chooses a parser from a file's first bytes (format auto).
func detector(opts parser.Options) func([]byte) (string, func() auditlogin.Parser) {
	return func(head []byte) (string, func() auditlogin.Parser) {
		format := parser.Detect(head)
		if format == "" {
			return "", nil
		}
		return format, func() auditlogin.Parser {
			p, _ := parser.New(format, opts)
			return p
		}
	}
}

// matches returns the files the globs match now.
func matches(globs []string) []string {
	var out []string
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		out = append(out, m...)
	}
	return out
}

// buildOutputs creates the configured outputs (without connecting). Errors
// name the config path.
func buildOutputs(cfg config.Config, w io.Writer, log *slog.Logger) ([]auditlogin.Output, error) {
	var outs []auditlogin.Output
	fail := func(err error) ([]auditlogin.Output, error) {
		for _, o := range outs {
			o.Close()
		}
		return nil, err
	}
	if cfg.Outputs.Stdout != nil {
		outs = append(outs, stdout.New(w))
	}
	if f := cfg.Outputs.File; f != nil {
		out, err := file.New(file.Config{Path: f.Path, MaxSize: int64(f.MaxSize), MaxFiles: f.MaxFiles})
		if err != nil {
			return fail(fmt.Errorf("outputs.file: %w", err))
		}
		outs = append(outs, out)
	}
	if k := cfg.Outputs.Kafka; k != nil {
		host, _ := os.Hostname()
		kc := kafka.Config{
			Brokers: k.Brokers, Topic: k.Topic, Key: k.Key, Headers: k.Headers, Compression: k.Compression, RequiredAcks: k.RequiredAcks,
			BatchSize: k.BatchSize, BatchBytes: int64(k.BatchBytes), Workers: k.Workers, Logger: log,
			MaxMessageBytes: int(k.MaxMessageBytes), Timeout: k.Timeout, RetryInitial: k.RetryInitial, RetryMax: k.RetryMax,
			ClientID: k.ClientID, AutoCreateTopic: *k.AutoCreateTopic, AgentHostname: host,
		}
		if t := k.TLS; t != nil {
			kc.TLS = &kafka.TLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
			if t.InsecureSkipVerify {
				log.Warn("outputs.kafka.tls.insecure_skip_verify is on: the broker's certificate is not checked, anyone in the path can read and change what is shipped")
			}
		}
		if a := k.SASL; a != nil {
			kc.SASL = &kafka.SASL{Mechanism: a.Mechanism, Username: a.Username, Password: a.Password, PasswordEnv: a.PasswordEnv, PasswordFile: a.PasswordFile}
		}
		if k.RequiredAcks == "none" {
			log.Warn("outputs.kafka.required_acks is none: the broker does not acknowledge writes, so events lost on the way are not sent again (at-least-once is given up)")
		}
		out, err := kafka.New(kc)
		if err != nil {
			return fail(fmt.Errorf("outputs.kafka.%w", err))
		}
		outs = append(outs, out)
	}
	if e := cfg.Outputs.Elasticsearch; e != nil {
		out, err := newESOutput(e, log)
		if err != nil {
			return fail(err)
		}
		outs = append(outs, out)
	}
	return outs, nil
}

// flushInterval is how long a partial batch waits: the pipeline's, or the
// Elasticsearch output's flush_interval if shorter.
func flushInterval(cfg config.Config) time.Duration {
	d := cfg.Pipeline.FlushInterval
	if e := cfg.Outputs.Elasticsearch; e != nil && e.FlushInterval > 0 && e.FlushInterval < d {
		d = e.FlushInterval
	}
	return d
}

// newESOutput makes the Elasticsearch output of the config (setup and
// report use it too, for its client).
func newESOutput(e *config.Elasticsearch, log *slog.Logger) (*elasticsearch.Output, error) {
	pass, err := clientcfg.Secret("password", e.Password, e.PasswordEnv, e.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("outputs.elasticsearch.%w", err)
	}
	key, err := clientcfg.Secret("api_key", e.APIKey, e.APIKeyEnv, e.APIKeyFile)
	if err != nil {
		return nil, fmt.Errorf("outputs.elasticsearch.%w", err)
	}
	ec := elasticsearch.Config{Hosts: e.Hosts, Username: e.Username, Password: pass, APIKey: key,
		Index: e.Index, DataStream: e.DataStream, Pipeline: e.Pipeline, BulkMaxEvents: e.BulkMaxEvents,
		BulkMaxBytes: int(e.BulkMaxBytes), Workers: e.Workers, Timeout: e.Timeout, RetryInitial: e.RetryInitial, RetryMax: e.RetryMax,
		Headers: e.Headers, TemplateName: e.TemplateName}
	if t := e.TLS; t != nil {
		ec.CAFile, ec.CAFingerprint, ec.CertFile, ec.KeyFile, ec.InsecureTLS = t.CAFile, t.CAFingerprint, t.CertFile, t.KeyFile, t.InsecureSkipVerify
		if t.InsecureSkipVerify {
			log.Warn("outputs.elasticsearch.tls.insecure_skip_verify is on: the cluster's certificate is not checked, anyone in the path can read and change what is shipped")
		}
	}
	o, err := elasticsearch.New(ec)
	if err != nil {
		return nil, fmt.Errorf("outputs.elasticsearch.%w", err)
	}
	return o, nil
}

type agentOptions struct {
	once   bool
	dryRun bool // read and parse, print what would be shipped, commit nothing
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// started, when set, is called with the metrics endpoint once it listens.
	started func(*metrics.Server)
}

// printDeadLetter is the dead-letter file of a dry run: rejections on stderr
// as FILE:OFFSET: reason, like parse.
type printDeadLetter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printDeadLetter) Write(e auditlogin.DeadLetterEntry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := fmt.Fprintf(p.w, "%s:%d: %s\n", e.Path, e.Offset, e.Reason)
	return err
}

func (p *printDeadLetter) Sync() error { return nil }

// seenWriteEvery is how often the seen-sources file is written while the
// agent runs (a variable for tests).
var seenWriteEvery = 10 * time.Second

// runAgent wires the tailer, the pipeline and the outputs for cfg and runs
// them until ctx is cancelled (or, with once, every file is read).
func runAgent(ctx context.Context, cfg config.Config, o agentOptions) error {
	log := o.log
	if o.dryRun {
		// What would be shipped goes to stdout, rejections to stderr; the
		// registry is read (to start where the service would) but not written.
		cfg.Outputs = config.Outputs{Stdout: &config.Stdout{}}
		o.once = true
	}
	applyMemoryLimit(cfg, log)
	applyMaxProcs(cfg, log)
	outs, err := buildOutputs(cfg, o.stdout, log)
	if err != nil {
		return err
	}
	closeAll := func() {
		for _, out := range outs {
			out.Close()
		}
	}
	var dl auditlogin.DeadLetter
	if o.dryRun {
		dl = &printDeadLetter{w: o.stderr}
	} else {
		fdl, err := file.NewDeadLetter(file.Config{Path: cfg.DeadLetter.Path, MaxSize: int64(cfg.DeadLetter.MaxSize), MaxFiles: cfg.DeadLetter.MaxFiles})
		if err != nil {
			closeAll()
			return fmt.Errorf("dead_letter: %w", err)
		}
		defer fdl.Close()
		dl = fdl
	}
	reg, err := tailer.OpenRegistry(cfg.Registry.Path, cfg.Registry.CleanAfter)
	if err != nil {
		closeAll()
		return err
	}
	var checkpoint auditlogin.Checkpoint = reg
	if o.dryRun {
		reg.ReadOnly()
		checkpoint = nil
		log.Info("dry run: printing what would be shipped; nothing is sent or committed")
	}

	var inputs []tailer.Input
	for i, in := range cfg.Inputs {
		loc, err := config.LoadLocation(in.Timezone)
		if err != nil {
			closeAll()
			return fmt.Errorf("inputs[%d].timezone: %w", i, err)
		}
		popts := parser.Options{Location: loc, MyHost: in.MyHost, Logouts: in.Logouts, Pasted: in.Pasted}
		format := in.Format
		ti := tailer.Input{Name: fmt.Sprintf("inputs[%d]", i), Paths: in.Paths, StartAtEnd: in.StartAt == "end"}
		if format == parser.FormatAuto {
			ti.Detect = detector(popts)
		} else {
			if _, err := parser.New(format, popts); err != nil {
				closeAll()
				return fmt.Errorf("inputs[%d].format: %w", i, err)
			}
			ti.NewParser = func() auditlogin.Parser {
				p, _ := parser.New(format, popts) // checked above
				return p
			}
		}
		inputs = append(inputs, ti)
	}

	host, _ := os.Hostname()
	agent := &auditlogin.AgentInfo{Hostname: host, Version: Version()}
	var fields map[string]any
	for k, v := range cfg.Fields {
		if fields == nil {
			fields = make(map[string]any, len(cfg.Fields))
		}
		fields[k], _ = auditlogin.FieldValue(v) // validated: a scalar
	}
	var tagger *enrich.Enricher
	var tick func() // the pipeline's Tick
	if cfg.Enrich.Enabled {
		seenPath := cfg.Enrich.NewSource.Path
		if o.dryRun {
			seenPath = "" // read nothing into, write nothing from, a dry run
		}
		tagger, err = enrich.New(enrich.Config{
			BruteForceThreshold: cfg.Enrich.BruteForce.Threshold, BruteForceWindow: cfg.Enrich.BruteForce.Window,
			NewSource: cfg.Enrich.NewSource.Enabled, SeenPath: seenPath, MaxSeen: cfg.Enrich.NewSource.MaxEntries,
		})
		if err != nil {
			closeAll()
			return fmt.Errorf("enrich.new_source: %w", err)
		}
		// The seen-set is copied every 10s on the pipeline's Tick (Enrich's
		// goroutine: no lock), written by the goroutine below, and written
		// once more at the end, when the pipeline has stopped.
		writes := make(chan func() error, 1)
		writerDone := make(chan struct{})
		var writing atomic.Bool // a copy is being written
		go func() {
			defer close(writerDone)
			for w := range writes {
				if err := w(); err != nil {
					log.Error("writing the seen-sources file", "err", err)
				}
				writing.Store(false)
			}
		}()
		lastSeenWrite := time.Now()
		tick = func() {
			if time.Since(lastSeenWrite) < seenWriteEvery || writing.Load() {
				return // not yet, or the last write is still going: a later tick
			}
			lastSeenWrite = time.Now()
			if w := tagger.Snapshot(); w != nil {
				writing.Store(true)
				writes <- w // the writer is idle: never blocks
			}
		}
		defer func() {
			close(writes)
			<-writerDone
			if err := tagger.Flush(); err != nil {
				log.Error("writing the seen-sources file", "err", err)
			}
		}()
	}
	enrichEvent := func(ev *auditlogin.Event) {
		ev.Agent = agent
		if len(fields) > 0 {
			ev.Fields = fields
		}
		if tagger != nil {
			tagger.Enrich(ev)
		}
	}

	var msrv *metrics.Server
	var onBatch func(string, time.Duration, int)
	if cfg.Metrics.Listen != "" && !o.dryRun {
		msrv = metrics.New(metrics.Config{Listen: cfg.Metrics.Listen, MaxLagBytes: int64(cfg.Metrics.MaxLagBytes), Pprof: cfg.Metrics.Pprof, Logger: log},
			metrics.Sources{Version: Version(), Lag: func() []metrics.FileLag {
				var out []metrics.FileLag
				for _, l := range reg.Lag() {
					out = append(out, metrics.FileLag{Path: l.Path, Size: l.Size, Committed: l.Committed, BytesBehind: l.Size - l.Committed})
				}
				return out
			}})
		onBatch = msrv.ObserveBatch
	}
	var keep func(*auditlogin.Event) bool
	if len(cfg.Processors) > 0 {
		chain, err := processors.Compile(cfg.Processors)
		if err != nil {
			closeAll()
			return err
		}
		keep = chain.Apply
	}
	var spools map[string]auditlogin.Spool
	if cfg.Spool.Enabled && !o.dryRun {
		spools = map[string]auditlogin.Spool{}
		for _, out := range outs {
			sp, err := spool.Open(spool.Config{Dir: filepath.Join(cfg.Spool.Path, out.Name()),
				MaxBytes: int64(cfg.Spool.MaxBytes), Logger: log.With("output", out.Name())})
			if err != nil {
				closeAll()
				return fmt.Errorf("spool.path: %w", err)
			}
			defer sp.Close()
			if st := sp.Stats(); st.Events > 0 {
				log.Info("spooled events from an earlier run are delivered first", "output", out.Name(), "events", st.Events, "bytes", st.Bytes)
			}
			spools[out.Name()] = sp
		}
	}
	schema, _ := auditlogin.ParseSchema(cfg.EventSchema) // validated
	tl := tailer.New(tailer.Config{
		Inputs: inputs, Registry: reg, Logger: log, Once: o.once,
		ScanInterval: cfg.Tail.ScanInterval, PollInterval: cfg.Tail.PollInterval,
		RotateWait: cfg.Tail.RotateWait, CloseInactive: cfg.Tail.CloseInactive, IdleAfter: cfg.Tail.IdleAfter,
		MaxOpenFiles:    cfg.Tail.MaxOpenFiles,
		FingerprintSize: cfg.Tail.FingerprintBytes, MaxLine: int(cfg.Tail.MaxLineBytes),
		Recycled: true, // the pipeline gives read buffers back (Recycle below)
	})
	pipe, err := auditlogin.NewPipeline(auditlogin.PipelineConfig{
		Recycle: tl.Recycle,
		Schema:  schema,
		Outputs: outs, Checkpoint: checkpoint, DeadLetter: dl, Logger: log, Enrich: enrichEvent, Tick: tick, OnBatch: onBatch, Spools: spools, Keep: keep,
		BatchSize: cfg.Pipeline.BatchSize, FlushInterval: flushInterval(cfg),
		MaxInFlight: cfg.Pipeline.MaxInFlight, MaxInFlightBytes: int64(cfg.Pipeline.MaxInFlightBytes), Adaptive: cfg.Pipeline.AdaptiveConcurrency,
		CommitInterval:  cfg.Registry.FlushInterval,
		ShutdownTimeout: cfg.Pipeline.ShutdownTimeout,
		RetryInitial:    cfg.Pipeline.RetryInitial, RetryMax: cfg.Pipeline.RetryMax,
		OnInFlightBound: memoryLimitFollower(cfg, log),
	})
	if err != nil {
		closeAll()
		return err
	}
	log.Info("following files", "inputs", len(inputs), "outputs", len(outs), "registry", reg.Path(), "dead_letter", cfg.DeadLetter.Path)

	if msrv != nil {
		msrv.SetStats(pipe.Stats)
		mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
		defer stopMetrics()
		if err := msrv.Start(mctx); err != nil {
			closeAll()
			return err
		}
		if o.started != nil {
			o.started(msrv)
		}
	}
	start := time.Now()
	// Two chunks of lines queued (256 KiB each, with their Line slices): the
	// tailer reads ahead of parsing by that much, no more (memory).
	lines := make(chan []auditlogin.Line, 2)
	var g errgroup.Group
	g.Go(func() error { return tl.Run(ctx, lines) })
	g.Go(func() error { return pipe.Run(ctx, lines) })
	err = g.Wait()
	st := pipe.Stats()
	log.Info("stopped", "events", st.Events, mapAttr("shipped", st.Shipped), "parse_errors", st.ParseErrors,
		"dead_lettered", st.DeadLettered, "commits", st.Commits, "elapsed", time.Since(start).Round(time.Millisecond).String(),
		"reading_blocked", st.ReadingBlocked.Round(time.Millisecond).String())
	return err
}

// mapAttr logs a map as a group of fields in key order (shipped.kafka=10 in
// text, {"shipped":{"kafka":10}} in JSON), not as Go's map[kafka:10].
func mapAttr[V any](key string, m map[string]V) slog.Attr {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, m[k]))
	}
	return slog.Attr{Key: key, Value: slog.GroupValue(attrs...)}
}

// applyMaxProcs sets pipeline.max_procs on the Go runtime, unless
// GOMAXPROCS was given (the runtime has read it already).
func applyMaxProcs(cfg config.Config, log *slog.Logger) {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		log.Debug("cores from GOMAXPROCS; pipeline.max_procs is not used", "GOMAXPROCS", v)
		return
	}
	log.Debug("cores the agent runs on", "max_procs", setMaxProcs(cfg.Pipeline.MaxProcs))
}

// memoryLimitFollower returns the pipeline's OnInFlightBound when the
// memory limit is auto (and GOMEMLIMIT not given): the limit then follows
// the in-flight bound as adaptive concurrency raises and lowers it, so
// that room for four times the events in flight is not left to the heap
// (and to the RSS) while the bound stays where it started.
func memoryLimitFollower(cfg config.Config, log *slog.Logger) func(int) {
	if os.Getenv("GOMEMLIMIT") != "" || !cfg.AutoMemoryLimit() || !cfg.Pipeline.AdaptiveConcurrency {
		return nil
	}
	return func(events int) {
		log.Debug("Go memory limit follows the in-flight bound", "max_in_flight", events, "memory_limit", setMemoryLimit(cfg.MemoryLimitFor(events)))
	}
}

// applyMemoryLimit sets pipeline.memory_limit on the Go runtime, unless
// GOMEMLIMIT was given (the runtime has read it already). A reload that
// turns it off restores Go's default (no limit).
func applyMemoryLimit(cfg config.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Debug("Go memory limit from GOMEMLIMIT; pipeline.memory_limit is not used", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
		return
	}
	limit := cfg.EffectiveMemoryLimit()
	if limit == 0 {
		setMemoryLimit(math.MaxInt64)
		log.Debug("Go memory limit off (pipeline.memory_limit: off)")
		return
	}
	log.Debug("Go memory limit set", "memory_limit", setMemoryLimit(limit))
}
