// Package metrics owns the agent's observability endpoint: Prometheus
// metrics (the text exposition format, written here with the standard
// library: the client library and its protobuf dependencies took about 3 MB
// of the agent's resident memory) read from the pipeline's counters at scrape time (so they cannot
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
	latency *histograms
	srv     *http.Server
	ln      net.Listener
	mu      sync.Mutex
}

// New builds the endpoint (not yet listening).
func New(cfg Config, src Sources) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, src: src, latency: newHistograms("auditlogin_batch_duration_seconds",
		"Time an output took to deliver a batch, retries included.", "output", exponentialBuckets(0.0005, 4, 10))}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", s.serveMetrics)
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
	s.latency.observe(output, took.Seconds())
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

// serveMetrics writes the metrics in Prometheus' text exposition format
// (version 0.0.4), read from the pipeline's counters at scrape time, then
// the Go runtime's and the process's own (go_*, process_*).
func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	st := s.stats()
	var e expo
	e.family("auditlogin_lines_read_total", "counter", "Lines read from the followed files.")
	e.sample("auditlogin_lines_read_total", float64(st.Lines))
	e.family("auditlogin_events_parsed_total", "counter", "Events parsed.")
	e.sample("auditlogin_events_parsed_total", float64(st.Events))
	e.family("auditlogin_events_dropped_total", "counter", "Events dropped by processors (drop_event).")
	e.sample("auditlogin_events_dropped_total", float64(st.Dropped))
	e.family("auditlogin_dead_lettered_total", "counter", "Records and events written to the dead-letter file.")
	e.sample("auditlogin_dead_lettered_total", float64(st.DeadLettered))

	outs := sortedKeys(st.Shipped)
	perOutput := func(name, typ, help string, v func(o string) float64) {
		if len(outs) == 0 {
			return
		}
		e.family(name, typ, help)
		for _, o := range outs {
			e.sample(name, v(o), "output", o)
		}
	}
	perOutput("auditlogin_events_shipped_total", "counter", "Events delivered, per output.", func(o string) float64 { return float64(st.Shipped[o]) })
	perOutput("auditlogin_output_errors_total", "counter", "Failed deliveries (Write calls), per output.", func(o string) float64 { return float64(st.Retries[o]) })
	perOutput("auditlogin_output_retries_total", "counter", "Events sent again after a failure, per output.", func(o string) float64 { return float64(st.Retried[o]) })
	perOutput("auditlogin_output_up", "gauge", "1 when the output's last delivery succeeded.", func(o string) float64 { return bit(!st.Down[o]) })

	// Back-pressure: what is in flight against its bounds, and how long
	// reading has waited for the outputs (Filebeat's pipeline.events.active
	// and queue fill, Vector's buffer gauges).
	e.family("auditlogin_events_in_flight", "gauge", "Records read and not yet acknowledged by every output.")
	e.sample("auditlogin_events_in_flight", float64(st.InFlight))
	e.family("auditlogin_in_flight_bytes", "gauge", "Bytes of the records in flight, as pipeline.max_in_flight_bytes counts them.")
	e.sample("auditlogin_in_flight_bytes", float64(st.InFlightBytes))
	if st.MaxInFlight > 0 {
		e.family("auditlogin_events_in_flight_max", "gauge", "Reading waits while this many records are in flight: pipeline.max_in_flight, raised by adaptive concurrency toward a distant destination.")
		e.sample("auditlogin_events_in_flight_max", float64(st.MaxInFlight))
	}
	if st.MaxInFlightBytes > 0 {
		e.family("auditlogin_in_flight_bytes_max", "gauge", "pipeline.max_in_flight_bytes: reading waits while this many bytes are in flight.")
		e.sample("auditlogin_in_flight_bytes_max", float64(st.MaxInFlightBytes))
	}
	e.family("auditlogin_reading_blocked_seconds_total", "counter", "Time reading waited for the outputs to acknowledge what is in flight (back-pressure).")
	e.sample("auditlogin_reading_blocked_seconds_total", st.ReadingBlocked.Seconds())

	spools := sortedKeys(st.Spool)
	perSpool := func(name, help string, v func(o string) float64) {
		if len(spools) == 0 {
			return
		}
		e.family(name, "gauge", help)
		for _, o := range spools {
			e.sample(name, v(o), "output", o)
		}
	}
	perSpool("auditlogin_output_spool_events", "Events in the output's spool, not yet delivered: how far it is behind.", func(o string) float64 { return float64(st.Spool[o].Events) })
	perSpool("auditlogin_output_spool_bytes", "Bytes of the output's spool on disk.", func(o string) float64 { return float64(st.Spool[o].Bytes) })
	perSpool("auditlogin_output_spool_oldest_age_seconds", "Age of the oldest event in the output's spool (0: empty).", func(o string) float64 {
		if t := st.Spool[o].Oldest; !t.IsZero() {
			return time.Since(t).Seconds()
		}
		return 0
	})
	perSpool("auditlogin_output_spooling", "1 while the output is behind and fed from its spool.", func(o string) float64 { return bit(st.Spooling[o]) })
	perSpool("auditlogin_output_spool_failing", "1 while the output's spool cannot be written (a full disk): reading waits for the output.", func(o string) float64 { return bit(st.SpoolFailing[o]) })

	if formats := sortedKeys(st.ParseErrorsByFormat); len(formats) > 0 {
		e.family("auditlogin_parse_failures_total", "counter", "Records the parser rejected, per format.")
		for _, f := range formats {
			e.sample("auditlogin_parse_failures_total", float64(st.ParseErrorsByFormat[f]), "format", f)
		}
	}
	if lag := s.lag(); len(lag) > 0 {
		e.family("auditlogin_file_bytes_behind", "gauge", "File size minus committed offset.")
		for _, l := range lag {
			e.sample("auditlogin_file_bytes_behind", float64(l.BytesBehind), "file", l.Path)
		}
	}
	if !st.LastCommit.IsZero() {
		e.family("auditlogin_registry_commit_age_seconds", "gauge", "Seconds since the registry was last known up to date.")
		e.sample("auditlogin_registry_commit_age_seconds", time.Since(st.LastCommit).Seconds())
	}
	e.family("auditlogin_build_info", "gauge", "The agent's version.")
	e.sample("auditlogin_build_info", 1, "goversion", runtime.Version(), "version", s.src.Version) // labels in name order, as before
	s.latency.write(&e)
	writeRuntime(&e)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(e.b)
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
