package metrics

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/auditlogin/auditlogin"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9145": true, "localhost:9145": true, "[::1]:9145": true,
		"0.0.0.0:9145": false, ":9145": false, "10.0.0.5:9145": false, "[::]:9145": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestReadyzLagBound(t *testing.T) {
	lag := []FileLag{{Path: "/a.log", Size: 100, Committed: 100}}
	s := New(Config{MaxLagBytes: 1000}, Sources{
		Stats: func() auditlogin.Stats { return auditlogin.Stats{Down: map[string]bool{"file": false}} },
		Lag:   func() []FileLag { return lag },
	})
	get := func() (int, map[string]any) {
		rec := httptest.NewRecorder()
		s.readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body map[string]any
		json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
	if code, body := get(); code != 200 || body["status"] != "ready" {
		t.Fatalf("%d %v", code, body)
	}
	lag = []FileLag{{Path: "/a.log", Size: 5000, Committed: 100, BytesBehind: 4900}}
	code, body := get()
	if code != 503 || body["max_bytes_behind"].(float64) != 4900 {
		t.Fatalf("a file 4900 bytes behind with a 1000 bound: %d %v", code, body)
	}
}

// Profiles are served only when asked for.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := New(Config{Pprof: on}, Sources{})
		rec := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/heap?debug=1", nil))
		if got := rec.Code == 200 && strings.Contains(rec.Body.String(), "heap profile"); got != on {
			t.Fatalf("pprof %v: /debug/pprof/heap answered %d %.80q", on, rec.Code, rec.Body.String())
		}
	}
}

// /readyz names an output that is behind (fed from its spool) and how far;
// the metrics carry the spool's size and age.
func TestReadyzAndMetricsShowASpoolingOutput(t *testing.T) {
	s := New(Config{}, Sources{Stats: func() auditlogin.Stats {
		return auditlogin.Stats{Down: map[string]bool{"kafka": false, "elasticsearch": false}, Shipped: map[string]int64{"kafka": 9, "elasticsearch": 2},
			Spooling: map[string]bool{"elasticsearch": true},
			Spool: map[string]auditlogin.SpoolStats{"elasticsearch": {Events: 7, Bytes: 4096, Oldest: time.Now().Add(-time.Minute)},
				"kafka": {}}}
	}})
	rec := httptest.NewRecorder()
	s.readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
	var body struct {
		Status  string
		Outputs map[string]string
		Spooled map[string]map[string]float64
	}
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 200 || body.Outputs["elasticsearch"] != "behind" || body.Outputs["kafka"] != "up" ||
		body.Spooled["elasticsearch"]["events"] != 7 || body.Spooled["elasticsearch"]["oldest_age_seconds"] < 59 {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`auditlogin_output_spool_events{output="elasticsearch"} 7`, `auditlogin_output_spool_bytes{output="elasticsearch"} 4096`,
		`auditlogin_output_spooling{output="elasticsearch"} 1`, `auditlogin_output_spooling{output="kafka"} 0`, `auditlogin_output_spool_oldest_age_seconds{output="elasticsearch"} 6`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}

// The scrape is valid Prometheus text format, read back by Prometheus' own
// parser: types, label values with quotes, backslashes and newlines (a
// file path may hold them), histogram buckets cumulative, the runtime's and
// the process's metrics.
func TestMetricsParseWithPrometheusParser(t *testing.T) {
	path := "/var/log/a \"b\"\\c\nd.log"
	s := New(Config{}, Sources{
		Stats: func() auditlogin.Stats {
			return auditlogin.Stats{Lines: 12, Events: 10, Shipped: map[string]int64{"kafka": 10, "file": 9},
				Down: map[string]bool{"kafka": true}, ParseErrorsByFormat: map[string]int64{"audit_login": 2}, LastCommit: time.Now(),
				InFlight: 2048, InFlightBytes: 1741824, MaxInFlight: 2048, MaxInFlightBytes: 8 << 20, ReadingBlocked: 1500 * time.Millisecond}
		},
		Lag:     func() []FileLag { return []FileLag{{Path: path, Size: 100, Committed: 40, BytesBehind: 60}} },
		Version: "v1.2.3",
	})
	for _, d := range []time.Duration{100 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, time.Minute} {
		s.ObserveBatch("kafka", d, 1)
	}
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation) // the classic metric names, as Prometheus 2 wants them
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("not valid text format: %v\n%s", err, rec.Body.String())
	}
	value := func(name string, labels map[string]string) (float64, dto.MetricType) {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no family %s", name)
		}
	next:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.Counter.GetValue(), f.GetType()
			case dto.MetricType_GAUGE:
				return m.Gauge.GetValue(), f.GetType()
			case dto.MetricType_HISTOGRAM:
				return float64(m.Histogram.GetSampleCount()), f.GetType()
			}
		}
		t.Fatalf("%s%v missing", name, labels)
		return 0, 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
		typ    dto.MetricType
	}{
		{"auditlogin_lines_read_total", nil, 12, dto.MetricType_COUNTER},
		{"auditlogin_events_shipped_total", map[string]string{"output": "file"}, 9, dto.MetricType_COUNTER},
		{"auditlogin_output_up", map[string]string{"output": "kafka"}, 0, dto.MetricType_GAUGE},
		{"auditlogin_output_up", map[string]string{"output": "file"}, 1, dto.MetricType_GAUGE},
		{"auditlogin_parse_failures_total", map[string]string{"format": "audit_login"}, 2, dto.MetricType_COUNTER},
		{"auditlogin_file_bytes_behind", map[string]string{"file": path}, 60, dto.MetricType_GAUGE},
		{"auditlogin_build_info", map[string]string{"version": "v1.2.3"}, 1, dto.MetricType_GAUGE},
		{"auditlogin_batch_duration_seconds", map[string]string{"output": "kafka"}, 4, dto.MetricType_HISTOGRAM},
		{"auditlogin_events_in_flight", nil, 2048, dto.MetricType_GAUGE},
		{"auditlogin_events_in_flight_max", nil, 2048, dto.MetricType_GAUGE},
		{"auditlogin_in_flight_bytes", nil, 1741824, dto.MetricType_GAUGE},
		{"auditlogin_in_flight_bytes_max", nil, 8 << 20, dto.MetricType_GAUGE},
		{"auditlogin_reading_blocked_seconds_total", nil, 1.5, dto.MetricType_COUNTER},
	} {
		if got, typ := value(c.name, c.labels); got != c.want || typ != c.typ {
			t.Errorf("%s%v = %v (%v), want %v (%v)", c.name, c.labels, got, typ, c.want, c.typ)
		}
	}
	h := fams["auditlogin_batch_duration_seconds"].Metric[0].Histogram
	if h.GetSampleSum() < 60 || h.GetSampleSum() > 60.01 {
		t.Errorf("histogram sum %v", h.GetSampleSum())
	}
	want := map[float64]uint64{0.0005: 1, 0.002: 1, 0.008: 3, 131.072: 4}
	for _, b := range h.Bucket {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if len(h.Bucket) != 11 {
		t.Errorf("%d buckets, want 10 and +Inf", len(h.Bucket))
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"} {
		if v, _ := value(name, nil); v <= 0 {
			t.Errorf("%s = %v", name, v)
		}
	}
	if st, _ := value("process_start_time_seconds", nil); st > float64(time.Now().Unix())+1 || st < float64(time.Now().Add(-24*time.Hour*365).Unix()) {
		t.Errorf("process_start_time_seconds %v is not this process's start", st)
	}
}
