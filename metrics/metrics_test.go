package metrics

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
