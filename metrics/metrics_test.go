package metrics

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

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
