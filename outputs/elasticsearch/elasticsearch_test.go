package elasticsearch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

func newOutput(t *testing.T, cfg Config) *Output {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestConformance(t *testing.T) {
	var s *estest.Server
	outputtest.Run(t, outputtest.Harness{
		New: func(t *testing.T) auditlogin.Output {
			s = estest.New()
			t.Cleanup(s.Close)
			return newOutput(t, Config{Hosts: []string{s.URL}})
		},
		ReadBack: func(t *testing.T, want int) [][]byte {
			docs := s.Docs("auditlogin-*")
			var out [][]byte
			for _, d := range docs {
				out = append(out, d)
			}
			sort.Slice(out, func(i, j int) bool {
				var a, b struct {
					Log struct{ Offset int64 } `json:"log"`
				}
				json.Unmarshal(out[i], &a)
				json.Unmarshal(out[j], &b)
				return a.Log.Offset < b.Log.Offset
			})
			return out
		},
	})
}

// A replay (after kill -9, a retry, a restart) creates nothing twice: 409
// counts as delivered.
func TestReplayIsExactlyOnce(t *testing.T) {
	s := estest.New()
	defer s.Close()
	o := newOutput(t, Config{Hosts: []string{s.URL}})
	evs := outputtest.Events(100, "once")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := o.Write(ctx, evs); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if n := s.Count("auditlogin-*"); n != 100 {
		t.Fatalf("index holds %d documents after three writes of 100, want 100", n)
	}
	// Exactly once by the shipper, not by the server: create actions only,
	// the replays refused with 409 (an index action would have overwritten).
	if ops := s.Ops(); ops["index"] != 0 || ops["create"] != 300 {
		t.Fatalf("bulk actions %v, want 300 create and no index", ops)
	}
	if s.Conflicts() != 200 || s.Overwrites() != 0 {
		t.Fatalf("%d conflicts and %d overwrites, want 200 and 0", s.Conflicts(), s.Overwrites())
	}
	for _, ev := range evs {
		if string(s.Docs("auditlogin-*")[ev.ID]) != string(ev.Encoded) {
			t.Fatalf("document %s differs from the event", ev.ID)
		}
	}
}

func TestPerItemResults(t *testing.T) {
	s := estest.New()
	defer s.Close()
	evs := outputtest.Events(50, "items")
	var mu sync.Mutex
	tries := map[string]int{}
	s.Lock()
	s.ItemFault = func(index, id string) int {
		mu.Lock()
		defer mu.Unlock()
		tries[id]++
		switch id {
		case evs[3].ID, evs[17].ID:
			if tries[id] == 1 {
				return 429
			}
		case evs[9].ID:
			if tries[id] == 1 {
				return 503
			}
		case evs[30].ID:
			return 400 // a mapping error: never retried
		}
		return 0
	}
	s.Unlock()
	o := newOutput(t, Config{Hosts: []string{s.URL}})
	err := o.Write(context.Background(), evs)
	var pe *auditlogin.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 4 {
		t.Fatalf("want 4 failed items, got %v", err)
	}
	var retry []*auditlogin.Event
	for _, f := range pe.Failed {
		permanent := errors.Is(f.Err, auditlogin.ErrPermanent)
		if permanent != (f.Index == 30) {
			t.Errorf("item %d permanent=%v: %v", f.Index, permanent, f.Err)
		}
		if f.Index == 30 && !strings.Contains(f.Err.Error(), "failed to parse field [ip]") {
			t.Errorf("the item's error is not kept: %v", f.Err)
		}
		if !permanent {
			retry = append(retry, evs[f.Index])
		}
	}
	if err := o.Write(context.Background(), retry); err != nil {
		t.Fatalf("retry of the 429/5xx items: %v", err)
	}
	if n := s.Count("auditlogin-*"); n != 49 {
		t.Fatalf("index holds %d, want 49 (all but the refused one)", n)
	}
	for _, ev := range evs {
		if ev != evs[30] && tries[ev.ID] > 2 {
			t.Errorf("%s sent %d times: only failed items are retried", ev.ID, tries[ev.ID])
		}
	}
}

func TestWholeRequestFailureIsTransient(t *testing.T) {
	s := estest.New()
	defer s.Close()
	o := newOutput(t, Config{Hosts: []string{s.URL}})
	s.Lock()
	s.Down = true
	s.Unlock()
	err := o.Write(context.Background(), outputtest.Events(5, "down"))
	if err == nil || errors.Is(err, auditlogin.ErrPermanent) {
		t.Fatalf("want a transient error while the cluster is down, got %v", err)
	}
	s.Lock()
	s.Down = false
	s.Unlock()
	if err := o.Write(context.Background(), outputtest.Events(5, "down")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := o.Write(context.Background(), outputtest.Events(5, "gone")); err == nil || errors.Is(err, auditlogin.ErrPermanent) {
		t.Fatalf("connection refused must be transient: %v", err)
	}
	// A batch that takes several bulk requests, none answered: an outage
	// (one error for the batch), not items refused one by one.
	small := newOutput(t, Config{Hosts: []string{s.URL}, BulkMaxEvents: 2})
	var pe *auditlogin.PartialError
	if err := small.Write(context.Background(), outputtest.Events(5, "gone")); err == nil || errors.As(err, &pe) {
		t.Fatalf("three bulk requests refused a connection: want the batch's error, got %v", err)
	}
}

func TestBulkLimitsAndIndexNames(t *testing.T) {
	s := estest.New()
	defer s.Close()
	o := newOutput(t, Config{Hosts: []string{s.URL}, BulkMaxEvents: 7})
	evs := outputtest.Events(50, "lim")
	evs[49].Timestamp = time.Date(2026, 11, 26, 0, 0, 1, 0, time.UTC)
	if err := o.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if b := s.Bulks(); b != 8 {
		t.Errorf("%d bulk requests for 50 events at 7 a request, want 8", b)
	}
	if ix := s.Indices(); strings.Join(ix, ",") != "auditlogin-2026.11.25,auditlogin-2026.11.26" {
		t.Errorf("daily indices from the events' own time: %v", ix)
	}
	o2 := newOutput(t, Config{Hosts: []string{s.URL}, Index: "logins-${myhost}-%{+yyyy.MM}", BulkMaxBytes: 2000})
	if err := o2.Write(context.Background(), evs[:10]); err != nil {
		t.Fatal(err)
	}
	if s.Count("logins-db-test-2026.11") != 10 {
		t.Errorf("templated index: %v", s.Indices())
	}
	for _, bad := range []string{"Upper-Case", "a/b", "_x", "logins-${nope}"} {
		if _, err := New(Config{Hosts: []string{s.URL}, Index: bad}); err == nil {
			t.Errorf("index %q accepted", bad)
		}
	}
	if _, err := New(Config{Hosts: []string{s.URL}, Index: DefaultIndex, DataStream: true}); err == nil {
		t.Error("a dated data stream name accepted")
	}
}

func TestAuthTLSAndCheck(t *testing.T) {
	s := estest.NewTLS()
	defer s.Close()
	s.Lock()
	s.Username, s.Password, s.APIKey = "shipper", "s3cret", "aWQ6a2V5"
	s.Unlock()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644)
	sum := sha256.Sum256(s.Certificate().Raw)
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"basic auth, CA file":       {Hosts: []string{s.URL}, Username: "shipper", Password: "s3cret", CAFile: caFile},
		"api key, CA fingerprint":   {Hosts: []string{s.URL}, APIKey: "aWQ6a2V5", CAFingerprint: hex.EncodeToString(sum[:])},
		"insecure (warned by main)": {Hosts: []string{s.URL}, APIKey: "aWQ6a2V5", InsecureTLS: true},
	} {
		o := newOutput(t, cfg)
		rep, err := o.Check(ctx)
		if err != nil || !strings.Contains(strings.Join(rep, "\n"), "Elasticsearch 8.19.0") ||
			!strings.Contains(strings.Join(rep, "\n"), "index template auditlogin is not installed") {
			t.Fatalf("%s: check %v %v", name, rep, err)
		}
		if err := o.Write(ctx, outputtest.Events(3, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	bad := newOutput(t, Config{Hosts: []string{s.URL}, Username: "shipper", Password: "wrong", CAFile: caFile})
	if _, err := bad.Check(ctx); err == nil || !strings.Contains(err.Error(), "authentication refused") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	if err := bad.Write(ctx, outputtest.Events(1, "x")); err == nil || errors.Is(err, auditlogin.ErrPermanent) {
		t.Fatalf("401 on write must be transient (nothing lost while credentials are fixed): %v", err)
	}
	noCA := newOutput(t, Config{Hosts: []string{s.URL}, APIKey: "aWQ6a2V5"})
	if _, err := noCA.Check(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA: %v", err)
	}
}

// A route processor's index, date pattern included, replaces the output's.
func TestRoutedIndex(t *testing.T) {
	o := newOutput(t, Config{Hosts: []string{"http://127.0.0.1:9"}})
	ev := outputtest.Events(1, "r")[0]
	if got := o.IndexFor(ev); got != "auditlogin-2026.11.25" {
		t.Fatalf("default index %q", got)
	}
	ev.Route.Index = "security-%{+yyyy.MM}"
	if got := o.IndexFor(ev); got != "security-2026.11" {
		t.Fatalf("routed index %q", got)
	}
}

// Bulk bodies come from a pool and go back when the transport closes them:
// bulks written at once by several goroutines each reach the cluster whole
// (every document as its event encoded it), and the ingest pipeline is
// asked for on each request.
func TestConcurrentBulksAreIntactAndUseThePipeline(t *testing.T) {
	s := estest.New()
	defer s.Close()
	var mu sync.Mutex
	pipelines := map[string]int{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_bulk") {
			mu.Lock()
			pipelines[r.URL.Query().Get("pipeline")]++
			mu.Unlock()
		}
		s.Config.Handler.ServeHTTP(w, r)
	}))
	defer front.Close()
	o := newOutput(t, Config{Hosts: []string{front.URL}, Pipeline: "geoip-logins", BulkMaxEvents: 10})
	const writers, each = 8, 200
	want := map[string]string{}
	var wg sync.WaitGroup
	for w := range writers {
		evs := outputtest.Events(each, fmt.Sprintf("w%d-", w))
		for _, ev := range evs {
			want[ev.ID] = string(ev.Encoded)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i += 50 {
				if err := o.Write(context.Background(), evs[i:i+50]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	docs := s.Docs("auditlogin-*")
	if len(docs) != len(want) {
		t.Fatalf("%d documents, want %d", len(docs), len(want))
	}
	for id, src := range want {
		if got := string(docs[id]); got != src {
			t.Fatalf("document %s is\n%s\nwant\n%s", id, got, src)
		}
	}
	if n := pipelines["geoip-logins"]; n != writers*each/10 || len(pipelines) != 1 {
		t.Errorf("pipeline parameter by value: %v, want %d requests with geoip-logins", pipelines, writers*each/10)
	}
	if f := s.Filtered(); f != writers*each/10 {
		t.Errorf("%d of %d bulk answers filtered (filter_path)", f, writers*each/10)
	}
}

// Item results are read from a bulk answer with or without the filter_path
// applied (a proxy or another bulk API may ignore it).
func TestItemResultsFilteredOrNot(t *testing.T) {
	for _, strip := range []bool{false, true} {
		s := estest.New()
		evs := outputtest.Events(20, fmt.Sprintf("f%v", strip))
		s.Lock()
		s.ItemFault = func(index, id string) int {
			if id == evs[7].ID {
				return 429
			}
			return 0
		}
		s.Unlock()
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strip {
				r.URL.RawQuery = ""
			}
			s.Config.Handler.ServeHTTP(w, r)
		}))
		o := newOutput(t, Config{Hosts: []string{front.URL}})
		err := o.Write(context.Background(), evs)
		var pe *auditlogin.PartialError
		if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Index != 7 || !strings.Contains(pe.Failed[0].Err.Error(), "429 es_rejected_execution_exception") {
			t.Errorf("filter_path stripped %v: want item 7 refused with 429, got %v", strip, err)
		}
		if f := s.Filtered(); f != map[bool]int{false: 1, true: 0}[strip] {
			t.Errorf("filter_path stripped %v: %d answers filtered", strip, f)
		}
		if n := s.Count("auditlogin-*"); n != 19 {
			t.Errorf("filter_path stripped %v: %d documents, want 19", strip, n)
		}
		front.Close()
		s.Close()
	}
}

// An index name that can change only with the hour is kept for the hour
// (not formatted per event), and is always what formatting gives; one with
// a field or a finer date part is formatted for each event.
func TestIndexNameOfTheHour(t *testing.T) {
	for _, c := range []struct {
		index  string
		hourly bool
	}{
		{DefaultIndex, true}, {"logins-%{+yyyy.MM.dd.HH}", true}, {"logins", true}, {"logins-%{+yyyy}", true},
		{"logins-${myhost}-%{+yyyy.MM}", false}, {"logins-%{+yyyy.MM.dd.04}", false}, {"logins-%{+HH.05}", false},
	} {
		it, err := parseIndex(c.index)
		if err != nil {
			t.Fatalf("%s: %v", c.index, err)
		}
		if it.hourly != c.hourly {
			t.Errorf("%s: hourly %v, want %v", c.index, it.hourly, c.hourly)
		}
		base := time.Date(1969, 12, 31, 22, 59, 58, 0, time.UTC)
		for i := range 2000 {
			// Steps of 7 minutes 13.5 seconds: every hour's boundary is
			// crossed, before and after 1970 and across days.
			ev := &auditlogin.Event{Timestamp: base.Add(time.Duration(i) * (7*time.Minute + 13500*time.Millisecond)), MyHost: "db-1"}
			if got, want := it.render(ev), it.format(ev); got != want {
				t.Fatalf("%s at %v: %q, formatted %q", c.index, ev.Timestamp, got, want)
			}
		}
	}
}
