package auditlogin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

// lineParser makes one event per line (thread = the line), rejects lines
// starting with "bad" and skips lines starting with "skip".
type lineParser struct{}

func (lineParser) Feed(l auditlogin.Line, emit func(auditlogin.Record)) {
	s := string(l.Data)
	switch {
	case strings.HasPrefix(s, "bad"):
		emit(auditlogin.Record{Pos: l.Pos, Err: errors.New("bad line"), Raw: []byte(s)})
	case strings.HasPrefix(s, "skip"):
		emit(auditlogin.Record{Pos: l.Pos})
	default:
		emit(auditlogin.Record{Pos: l.Pos, Event: &auditlogin.Event{
			TS: "2026-11-25 10:00:00", Type: auditlogin.TypeSuccess, MyHost: "h", Thread: s,
			Path: l.Pos.Path, Offset: l.Pos.Offset}})
	}
}

// memCheckpoint records commits.
type memCheckpoint struct {
	mu      sync.Mutex
	offsets map[auditlogin.FileID]int64
	commits int
}

func (m *memCheckpoint) Commit(o map[auditlogin.FileID]auditlogin.Committed) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.offsets == nil {
		m.offsets = map[auditlogin.FileID]int64{}
	}
	for id, c := range o {
		if c.Offset < m.offsets[id] {
			return fmt.Errorf("offset moved backwards for %v: %d -> %d", id, m.offsets[id], c.Offset)
		}
		m.offsets[id] = c.Offset
	}
	m.commits++
	return nil
}

func (m *memCheckpoint) get(id auditlogin.FileID) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.offsets[id]
}

type memDeadLetter struct {
	mu      sync.Mutex
	entries []auditlogin.DeadLetterEntry
}

func (d *memDeadLetter) Write(e auditlogin.DeadLetterEntry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.entries = append(d.entries, e)
	return nil
}
func (d *memDeadLetter) Sync() error { return nil }
func (d *memDeadLetter) all() []auditlogin.DeadLetterEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]auditlogin.DeadLetterEntry(nil), d.entries...)
}

var fileA = auditlogin.FileID{Dev: 1, Ino: 1, FPLen: 4, FP: "a"}

// feed sends n lines "0".."n-1" (each 10 bytes with its newline) of fileA.
func feed(ch chan<- []auditlogin.Line, from, n int, text func(i int) string) {
	var p lineParser
	var batch []auditlogin.Line
	for i := from; i < from+n; i++ {
		s := fmt.Sprint(i)
		if text != nil {
			s = text(i)
		}
		batch = append(batch, auditlogin.Line{Data: []byte(s), Parser: p,
			Pos: auditlogin.Position{File: fileA, Path: "/a.log", Offset: int64(i) * 10, End: int64(i+1) * 10}})
		if len(batch) == 7 {
			ch <- batch
			batch = nil
		}
	}
	if len(batch) > 0 {
		ch <- batch
	}
}

func newPipeline(t *testing.T, outs []auditlogin.Output, cp auditlogin.Checkpoint, dl auditlogin.DeadLetter, mod func(*auditlogin.PipelineConfig)) *auditlogin.Pipeline {
	cfg := auditlogin.PipelineConfig{Outputs: outs, Checkpoint: cp, DeadLetter: dl, BatchSize: 16,
		FlushInterval: 10 * time.Millisecond, CommitInterval: 10 * time.Millisecond,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, ShutdownTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	p, err := auditlogin.NewPipeline(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func threads(evs []*auditlogin.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Thread)
	}
	return out
}

func TestPipelineShipsEverythingAndCommitsTheEnd(t *testing.T) {
	a, b := outputtest.NewFake("a"), outputtest.NewFake("b")
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a, b}, cp, nil, nil)
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 1000, nil)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, o := range []*outputtest.Fake{a, b} {
		got := threads(o.Delivered())
		if len(got) != 1000 {
			t.Fatalf("%s got %d events", o.Name(), len(got))
		}
		for i, th := range got {
			if th != fmt.Sprint(i) {
				t.Fatalf("%s: event %d is %s: order lost", o.Name(), i, th)
			}
		}
		if !o.Closed() {
			t.Errorf("%s not closed", o.Name())
		}
		for _, ev := range o.Delivered() {
			if ev.ID == "" || len(ev.Encoded) == 0 {
				t.Fatal("event not given an id and encoding")
			}
		}
		for _, b := range o.Batches() {
			if len(b) == 0 || len(b) > 16 {
				t.Fatalf("%s: a write of %d events, batch_size 16", o.Name(), len(b))
			}
		}
	}
	if got := cp.get(fileA); got != 10000 {
		t.Fatalf("committed %d, want 10000", got)
	}
	st := p.Stats()
	if st.Events != 1000 || st.Shipped["a"] != 1000 || st.Shipped["b"] != 1000 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPipelineRetriesTransientFailures(t *testing.T) {
	a := outputtest.NewFake("a")
	a.FailNext(5, nil)
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, nil)
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 100, nil)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(a.Delivered()); n != 100 {
		t.Fatalf("delivered %d, want 100 (no loss, no duplicates)", n)
	}
	if p.Stats().Retries["a"] != 5 {
		t.Fatalf("retries %d, want 5", p.Stats().Retries["a"])
	}
	if cp.get(fileA) != 1000 {
		t.Fatalf("committed %d", cp.get(fileA))
	}
}

func TestPipelinePartialFailureRetriesOnlyFailedItems(t *testing.T) {
	a := outputtest.NewFake("a")
	var mu sync.Mutex
	failed := map[string]int{}
	a.FailItems(func(ev *auditlogin.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasSuffix(ev.Thread, "3") && failed[ev.Thread] < 2 {
			failed[ev.Thread]++
			return errors.New("429 too many requests")
		}
		if ev.Thread == "42" {
			return auditlogin.Permanent(errors.New("mapper_parsing_exception"))
		}
		return nil
	})
	cp := &memCheckpoint{}
	dl := &memDeadLetter{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, dl, nil)
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 100, nil)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, th := range threads(a.Delivered()) {
		count[th]++
	}
	for i := 0; i < 100; i++ {
		th := fmt.Sprint(i)
		want := 1
		if th == "42" {
			want = 0
		}
		if count[th] != want {
			t.Errorf("event %s delivered %d times, want %d", th, count[th], want)
		}
	}
	ents := dl.all()
	if len(ents) != 1 || ents[0].Event.Thread != "42" || ents[0].Output != "a" || ents[0].Offset != 420 {
		t.Fatalf("dead letters: %+v", ents)
	}
	if cp.get(fileA) != 1000 {
		t.Fatalf("committed %d: a dead-lettered event must not hold the offset back", cp.get(fileA))
	}
}

func TestPipelineParseErrorsAreDeadLetteredAndAcked(t *testing.T) {
	a := outputtest.NewFake("a")
	cp := &memCheckpoint{}
	dl := &memDeadLetter{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, dl, nil)
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 50, func(i int) string {
		switch i % 10 {
		case 3:
			return "bad" + fmt.Sprint(i)
		case 4:
			return "skip"
		}
		return fmt.Sprint(i)
	})
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(a.Delivered()); n != 40 {
		t.Fatalf("delivered %d, want 40", n)
	}
	ents := dl.all()
	if len(ents) != 5 || ents[0].Offset != 30 || ents[0].Path != "/a.log" || string(ents[0].Raw) != "bad3" {
		t.Fatalf("dead letters: %+v", ents)
	}
	if p.Stats().ParseErrors != 5 {
		t.Fatalf("parse errors counted %d", p.Stats().ParseErrors)
	}
	if cp.get(fileA) != 500 {
		t.Fatalf("committed %d, want 500", cp.get(fileA))
	}
}

// A blocked output stops the pipeline from taking more lines (bounded memory)
// and keeps the committed offset where delivery stopped; a shutdown then does
// not wait forever.
func TestPipelineBlockedOutputBoundsMemoryAndOffsets(t *testing.T) {
	a := outputtest.NewFake("a")
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		// 32 (the least allowed with batches of 16): below what the output's
		// queue and the batch being built could hold on their own (about 64),
		// so only the tracker's bound keeps the count this low.
		c.MaxInFlight = 32
		c.ShutdownTimeout = 200 * time.Millisecond
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { done <- p.Run(ctx, ch) }()
	feed(ch, 0, 100, nil)
	// Let it deliver, then block.
	deadline := time.Now().Add(5 * time.Second)
	for cp.get(fileA) != 1000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if cp.get(fileA) != 1000 {
		t.Fatalf("first 100 not committed: %d", cp.get(fileA))
	}
	release := a.Block()
	defer release()
	sent := make(chan int)
	go func() {
		n := 0
		for i := 100; i < 10000; i += 7 {
			select {
			case ch <- oneBatch(i):
				n += 7
			case <-time.After(300 * time.Millisecond):
				sent <- n
				return
			}
		}
		sent <- n
	}()
	n := <-sent
	// max_in_flight, plus the 7-line chunk the parse stage was in when it
	// blocked and the one the feeder had just handed over.
	if n > 32+7*2 {
		t.Fatalf("pipeline took %d lines while its output was blocked: memory is not bounded", n)
	}
	if got := cp.get(fileA); got != 1000 {
		t.Fatalf("committed %d while output blocked, want 1000", got)
	}
	// The stall shows in the counters while it lasts: in flight at its
	// bound, reading waiting, and the wait growing.
	st := p.Stats()
	if st.InFlight != 32 || st.MaxInFlight != 32 || st.InFlightBytes <= 0 || st.ReadingBlocked <= 0 {
		t.Fatalf("while blocked: in flight %d of %d (%d bytes), reading blocked %v", st.InFlight, st.MaxInFlight, st.InFlightBytes, st.ReadingBlocked)
	}
	waitFor(t, "the blocked time to grow", func() bool { return p.Stats().ReadingBlocked > st.ReadingBlocked })
	stop() // SIGTERM
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout with a blocked output")
	}
	if got := cp.get(fileA); got != 1000 {
		t.Fatalf("committed %d after shutdown, want 1000 (nothing past the blocked batch)", got)
	}
}

func oneBatch(from int) []auditlogin.Line {
	var p lineParser
	var b []auditlogin.Line
	for i := from; i < from+7; i++ {
		b = append(b, auditlogin.Line{Data: []byte(fmt.Sprint(i)), Parser: p,
			Pos: auditlogin.Position{File: fileA, Path: "/a.log", Offset: int64(i) * 10, End: int64(i+1) * 10}})
	}
	return b
}

// With two outputs, offsets move only when both have a batch.
func TestPipelineCommitsOnlyWhatEveryOutputAcked(t *testing.T) {
	fast, slow := outputtest.NewFake("fast"), outputtest.NewFake("slow")
	release := slow.Block()
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{fast, slow}, cp, nil, nil)
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 20, nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(fast.Delivered()) < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := cp.get(fileA); got != 0 {
		t.Fatalf("committed %d while one output had nothing", got)
	}
	release()
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := cp.get(fileA); got != 200 {
		t.Fatalf("committed %d, want 200", got)
	}
}

// A stop with an output that never succeeds ends within the shutdown timeout
// and commits nothing that was not delivered.
func TestPipelineStopWithDeadOutputCommitsOnlyAcked(t *testing.T) {
	a := outputtest.NewFake("a")
	a.FailNext(1<<30, nil) // never succeeds
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.ShutdownTimeout = 100 * time.Millisecond
	})
	ch := make(chan []auditlogin.Line, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, ch) }()
	feed(ch, 0, 30, nil)
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
	if got := cp.get(fileA); got != 0 {
		t.Fatalf("committed %d though nothing was delivered", got)
	}
}

// Rejected records are logged with file and offset, but a flood of them is
// not: past a burst, one summary line.
func TestPipelineRejectionLogsAreBounded(t *testing.T) {
	var logs bytes.Buffer
	a := outputtest.NewFake("a")
	p := newPipeline(t, []auditlogin.Output{a}, &memCheckpoint{}, &memDeadLetter{}, func(c *auditlogin.PipelineConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 500, func(i int) string { return "bad" + fmt.Sprint(i) })
	close(ch)
	<-done
	if n := strings.Count(logs.String(), "rejected record"); n != 10 {
		t.Fatalf("%d rejection lines logged for 500 rejected records, want 10", n)
	}
	if !strings.Contains(logs.String(), "file=/a.log offset=0") {
		t.Fatalf("rejection log lacks file and offset:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "not_logged=490") {
		t.Fatalf("no summary of the 490 rejections not logged:\n%s", logs.String())
	}
	if p.Stats().ParseErrors != 500 || p.Stats().DeadLettered != 500 {
		t.Fatalf("every rejection must still be counted and kept: %+v", p.Stats())
	}
}

// The burst is per minute: a minute after the window opened, the summary of
// what was not logged comes first, then rejections are logged again.
func TestPipelineRejectionLogWindow(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	p := newPipeline(t, []auditlogin.Output{outputtest.NewFake("a")}, &memCheckpoint{}, &memDeadLetter{}, func(c *auditlogin.PipelineConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs, mu: &mu}, nil))
	})
	var clock sync.Mutex
	auditlogin.SetClock(p, func() time.Time { clock.Lock(); defer clock.Unlock(); return now })
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	count := func(s string) int { mu.Lock(); defer mu.Unlock(); return strings.Count(logs.String(), s) }
	parsed := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for p.Stats().ParseErrors < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	feed(ch, 0, 15, func(i int) string { return "bad" + fmt.Sprint(i) }) // 10 logged, 5 not
	parsed(15)
	advance(59 * time.Second)
	feed(ch, 15, 5, func(i int) string { return "bad" + fmt.Sprint(i) }) // same minute: none logged
	parsed(20)
	advance(time.Second)
	feed(ch, 20, 3, func(i int) string { return "bad" + fmt.Sprint(i) }) // a new minute
	close(ch)
	<-done
	if n := count("rejected record"); n != 13 {
		t.Fatalf("%d rejection lines, want 10 in the first minute and 3 in the second:\n%s", n, logs.String())
	}
	if n := count("not_logged=10"); n != 1 {
		t.Fatalf("summary of the first minute's 10 unlogged rejections said %d times:\n%s", n, logs.String())
	}
	if n := count("more records rejected than logged"); n != 1 {
		t.Fatalf("%d summaries, want 1 (nothing unlogged in the second minute):\n%s", n, logs.String())
	}
}

type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}
