// Package metrics owns the agent's observability endpoint: Prometheus
// metrics read from the pipeline's counters at scrape time (so they cannot
// drift from what the pipeline did), a batch latency histogram, bytes behind
// per followed file, and /healthz and /readyz with JSON bodies.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/auditlogin/auditlogin"
)

// FileLag is how far the agent is behind on one followed file.
type FileLag struct {
	Path        string
	Size        int64
	Committed   int64
	BytesBehind int64
}

// Sources are what the endpoint reads; every function is called at scrape
// or probe time, from the HTTP server's goroutines.
type Sources struct {
	Stats   func() auditlogin.Stats
	Lag     func() []FileLag // followed files
	Version string
}

// Config configures the endpoint.
type Config struct {
	Listen      string // host:port
	MaxLagBytes int64  // /readyz fails when a file is further behind (0: no bound)
	Pprof       bool   // serve Go's profiles under /debug/pprof/
	Logger      *slog.Logger
}

// Server is the metrics and health endpoint.
type Server struct {
	cfg     Config
	src     Sources
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec
	srv     *http.Server
	ln      net.Listener
	mu      sync.Mutex
}

// New builds the endpoint (not yet listening).
func New(cfg Config, src Sources) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, src: src, reg: prometheus.NewRegistry()}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "auditlogin_batch_duration_seconds",
		Help:    "Time an output took to deliver a batch, retries included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"output"})
	s.reg.MustRegister(s.latency, &collector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/readyz", s.readyz)
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// SetStats sets the pipeline's counters source (the pipeline is built after
// the endpoint, which it reports batches to).
func (s *Server) SetStats(f func() auditlogin.Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.src.Stats = f
}

func (s *Server) stats() auditlogin.Stats {
	s.mu.Lock()
	f := s.src.Stats
	s.mu.Unlock()
	if f == nil {
		return auditlogin.Stats{}
	}
	return f()
}

// ObserveBatch records a batch's delivery time (the pipeline's OnBatch).
func (s *Server) ObserveBatch(output string, took time.Duration, _ int) {
	s.latency.WithLabelValues(output).Observe(took.Seconds())
}

// IsLoopback reports whether a listen address only accepts local
// connections.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start listens and serves in the background until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	if !IsLoopback(s.cfg.Listen) {
		s.cfg.Logger.Warn("the metrics endpoint listens beyond this host: anyone who reaches it can read file paths and counts",
			"listen", ln.Addr().String())
	}
	s.cfg.Logger.Info("serving metrics and health", "listen", ln.Addr().String())
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("metrics endpoint stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	return nil
}

// Addr is the address the endpoint listens on (after Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "version": s.src.Version})
}

// readyz: ready when every output is up and no file is further behind than
// MaxLagBytes.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.stats()
	outputs := map[string]string{}
	var problems []string
	for name, down := range st.Down {
		outputs[name] = "up"
		if down {
			outputs[name] = "down"
			problems = append(problems, "output "+name+" is failing")
		}
	}
	var behind int64
	for _, l := range s.lag() {
		if l.BytesBehind > behind {
			behind = l.BytesBehind
		}
		if s.cfg.MaxLagBytes > 0 && l.BytesBehind > s.cfg.MaxLagBytes {
			problems = append(problems, fmt.Sprintf("%s is %d bytes behind (more than %d)", l.Path, l.BytesBehind, s.cfg.MaxLagBytes))
		}
	}
	// An output behind the others is fed from its spool: said, with how
	// far, but not a failure by itself (reading and the other outputs go on).
	spooled := map[string]any{}
	for name, sp := range st.Spool {
		if st.Spooling[name] || sp.Events > 0 {
			if outputs[name] == "up" {
				outputs[name] = "behind"
			}
			e := map[string]any{"events": sp.Events, "bytes": sp.Bytes}
			if !sp.Oldest.IsZero() {
				e["oldest_age_seconds"] = time.Since(sp.Oldest).Seconds()
			}
			spooled[name] = e
		}
		if st.SpoolFailing[name] {
			problems = append(problems, "the spool of output "+name+" cannot be written (disk full?): reading waits for the output")
		}
	}
	sort.Strings(problems)
	body := map[string]any{"outputs": outputs, "max_bytes_behind": behind}
	if len(spooled) > 0 {
		body["spooled"] = spooled
	}
	if len(problems) > 0 {
		body["status"], body["problems"] = "not ready", problems
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	body["status"] = "ready"
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) lag() []FileLag {
	if s.src.Lag == nil {
		return nil
	}
	return s.src.Lag()
}

// collector turns the pipeline's counters into metrics at scrape time.
type collector struct{ s *Server }

var (
	descLines     = prometheus.NewDesc("auditlogin_lines_read_total", "Lines read from the followed files.", nil, nil)
	descEvents    = prometheus.NewDesc("auditlogin_events_parsed_total", "Events parsed.", nil, nil)
	descShipped   = prometheus.NewDesc("auditlogin_events_shipped_total", "Events delivered, per output.", []string{"output"}, nil)
	descParseErr  = prometheus.NewDesc("auditlogin_parse_failures_total", "Records the parser rejected, per format.", []string{"format"}, nil)
	descDropped   = prometheus.NewDesc("auditlogin_events_dropped_total", "Events dropped by processors (drop_event).", nil, nil)
	descDead      = prometheus.NewDesc("auditlogin_dead_lettered_total", "Records and events written to the dead-letter file.", nil, nil)
	descOutErr    = prometheus.NewDesc("auditlogin_output_errors_total", "Failed deliveries (Write calls), per output.", []string{"output"}, nil)
	descRetries   = prometheus.NewDesc("auditlogin_output_retries_total", "Events sent again after a failure, per output.", []string{"output"}, nil)
	descOutUp     = prometheus.NewDesc("auditlogin_output_up", "1 when the output's last delivery succeeded.", []string{"output"}, nil)
	descBehind    = prometheus.NewDesc("auditlogin_file_bytes_behind", "File size minus committed offset.", []string{"file"}, nil)
	descCommitAge = prometheus.NewDesc("auditlogin_registry_commit_age_seconds", "Seconds since the registry was last known up to date.", nil, nil)
	descSpoolEv   = prometheus.NewDesc("auditlogin_output_spool_events", "Events in the output's spool, not yet delivered: how far it is behind.", []string{"output"}, nil)
	descSpoolB    = prometheus.NewDesc("auditlogin_output_spool_bytes", "Bytes of the output's spool on disk.", []string{"output"}, nil)
	descSpoolAge  = prometheus.NewDesc("auditlogin_output_spool_oldest_age_seconds", "Age of the oldest event in the output's spool (0: empty).", []string{"output"}, nil)
	descSpoolFail = prometheus.NewDesc("auditlogin_output_spool_failing", "1 while the output's spool cannot be written (a full disk): reading waits for the output.", []string{"output"}, nil)
	descSpooling  = prometheus.NewDesc("auditlogin_output_spooling", "1 while the output is behind and fed from its spool.", []string{"output"}, nil)
	descBuild     = prometheus.NewDesc("auditlogin_build_info", "The agent's version.", []string{"version", "goversion"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLines, descEvents, descDropped, descShipped, descParseErr, descDead, descOutErr, descRetries, descOutUp, descBehind, descCommitAge, descSpoolEv, descSpoolB, descSpoolAge, descSpooling, descSpoolFail, descBuild} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descLines, st.Lines)
	counter(descEvents, st.Events)
	counter(descDead, st.DeadLettered)
	counter(descDropped, st.Dropped)
	for o, n := range st.Shipped {
		counter(descShipped, n, o)
		counter(descOutErr, st.Retries[o], o)
		counter(descRetries, st.Retried[o], o)
		up := 1.0
		if st.Down[o] {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descOutUp, prometheus.GaugeValue, up, o)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for o, sp := range st.Spool {
		gauge(descSpoolEv, float64(sp.Events), o)
		gauge(descSpoolB, float64(sp.Bytes), o)
		age := 0.0
		if !sp.Oldest.IsZero() {
			age = time.Since(sp.Oldest).Seconds()
		}
		gauge(descSpoolAge, age, o)
		on := 0.0
		if st.Spooling[o] {
			on = 1
		}
		gauge(descSpooling, on, o)
		failing := 0.0
		if st.SpoolFailing[o] {
			failing = 1
		}
		gauge(descSpoolFail, failing, o)
	}
	for f, n := range st.ParseErrorsByFormat {
		counter(descParseErr, n, f)
	}
	for _, l := range c.s.lag() {
		ch <- prometheus.MustNewConstMetric(descBehind, prometheus.GaugeValue, float64(l.BytesBehind), l.Path)
	}
	if !st.LastCommit.IsZero() {
		ch <- prometheus.MustNewConstMetric(descCommitAge, prometheus.GaugeValue, time.Since(st.LastCommit).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, c.s.src.Version, runtime.Version())
}
