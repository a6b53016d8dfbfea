package auditlogin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

// waitFor polls cond until it holds or fails the test after 10s.
// waitRun waits for a pipeline's Run to return (its error on done) and
// fails with why when it has not within 20 s.
func waitRun(t *testing.T, done <-chan error, why string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal(why)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func holds(batch []*auditlogin.Event, thread string) bool {
	for _, ev := range batch {
		if ev.Thread == thread {
			return true
		}
	}
	return false
}

// A Concurrent output gets several writes at once; while the first batch is
// held, later ones are delivered, and the committed offset stays before the
// held batch (a gap no later acknowledgement jumps); once it is released,
// everything is committed.
func TestPipelineWritesInParallelAndCommitsOnlyTheContiguousPrefix(t *testing.T) {
	a := outputtest.NewFake("a")
	a.SetWorkers(4)
	release := make(chan struct{})
	// The later writes wait until the held one has begun (a worker may
	// start its Write after others have finished theirs): then they can
	// only be delivered beside it.
	started := make(chan struct{})
	var startOnce sync.Once
	a.HoldWhere(func(b []*auditlogin.Event) <-chan struct{} {
		if holds(b, "0") {
			startOnce.Do(func() { close(started) })
			return release
		}
		return started
	})
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, nil)
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 64, nil) // 4 batches of 16
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	waitFor(t, "three later batches delivered beside the held one", func() bool { return len(a.Delivered()) == 48 })
	if a.MaxInFlight() < 2 {
		t.Fatalf("at most %d write(s) in flight, want several", a.MaxInFlight())
	}
	// Let the committer run a few times: nothing may be committed past the gap.
	c0 := p.Stats().LastCommit
	waitFor(t, "the committer to run again", func() bool { return p.Stats().LastCommit.Sub(c0) > 20*time.Millisecond })
	if got := cp.get(fileA); got != 0 {
		t.Fatalf("committed %d with the first batch unacknowledged, want 0", got)
	}
	close(release)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := cp.get(fileA); got != 640 {
		t.Fatalf("committed %d, want 640", got)
	}
	if n := len(a.Delivered()); n != 64 {
		t.Fatalf("delivered %d, want 64", n)
	}
}

// Items refused under pressure are sent again with new events, not alone and
// not after a backoff; every event is delivered exactly once; the output is
// never marked down (it accepted most of every write).
func TestPipelineRefusedItemsGoWithTheNextWrite(t *testing.T) {
	a := outputtest.NewFake("a")
	var p *auditlogin.Pipeline
	// Hold the first write until the next batch has been read, so that the
	// refused items of the first find new events to go with.
	var first sync.Once
	a.HoldWhere(func(b []*auditlogin.Event) <-chan struct{} {
		var ch chan struct{}
		first.Do(func() {
			ch = make(chan struct{})
			go func() {
				// Line 40 read: lines 16-31 were handed over as a batch.
				for p.Stats().Lines < 40 {
					time.Sleep(time.Millisecond)
				}
				close(ch)
			}()
		})
		if ch == nil {
			return nil
		}
		return ch
	})
	var mu sync.Mutex
	refused := map[string]bool{}
	a.FailItems(func(ev *auditlogin.Event) error {
		mu.Lock()
		defer mu.Unlock()
		var n int
		fmt.Sscan(ev.Thread, &n)
		if n%3 == 0 && !refused[ev.Thread] { // a third refused once
			refused[ev.Thread] = true
			return errors.New("429 es_rejected_execution_exception")
		}
		return nil
	})
	cp := &memCheckpoint{}
	p = newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		// A backoff this long would show: the test's deadline is shorter.
		c.RetryInitial, c.RetryMax = time.Hour, time.Hour
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, 300, nil)
	close(ch)
	waitRun(t, done, "refused items waited for a backoff")
	count := map[string]int{}
	for _, th := range threads(a.Delivered()) {
		count[th]++
	}
	for i := 0; i < 300; i++ {
		if count[fmt.Sprint(i)] != 1 {
			t.Fatalf("event %d delivered %d times", i, count[fmt.Sprint(i)])
		}
	}
	// Some write must carry a refused item together with events never sent.
	sent := map[string]bool{}
	mixed := false
	for _, b := range a.Batches() {
		var again, fresh bool
		for _, ev := range b {
			if sent[ev.Thread] {
				again = true
			} else {
				fresh = true
			}
			sent[ev.Thread] = true
		}
		mixed = mixed || (again && fresh)
	}
	if !mixed {
		t.Fatal("no write mixed refused items with new events")
	}
	// Refused items go first: in every write, no item sent before comes
	// after one sent for the first time.
	sentBefore := map[string]bool{}
	for _, b := range a.Batches() {
		fresh := false
		for _, ev := range b {
			if sentBefore[ev.Thread] && fresh {
				t.Fatalf("a refused item after new ones in a write: %v", threads(b))
			}
			if !sentBefore[ev.Thread] {
				fresh = true
			}
		}
		for _, ev := range b {
			sentBefore[ev.Thread] = true
		}
	}
	if st := p.Stats(); st.Shipped["a"] != 300 {
		t.Fatalf("shipped %d, want 300 (each event counted once, when delivered)", st.Shipped["a"])
	}
	if cp.get(fileA) != 3000 {
		t.Fatalf("committed %d, want 3000", cp.get(fileA))
	}
	if st := p.Stats(); st.Retried["a"] != 100 {
		t.Fatalf("retried %d, want 100", st.Retried["a"])
	}
}

// In an outage (every write fails whole), one write at a time probes the
// destination: the workers do not hammer it.
func TestPipelineOutageProbesWithOneWrite(t *testing.T) {
	a := outputtest.NewFake("a")
	a.SetWorkers(4)
	a.FailNext(1<<30, nil)
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.RetryInitial, c.RetryMax = 20*time.Millisecond, 20*time.Millisecond
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	fed := make(chan struct{})
	go func() { feed(ch, 0, 160, nil); close(fed) }() // blocks while the output is down
	waitFor(t, "the output marked down", func() bool { return p.Stats().Down["a"] })
	a.ResetMaxInFlight()
	calls := a.Calls()
	waitFor(t, "probes", func() bool { return a.Calls() >= calls+5 })
	if m := a.MaxInFlight(); m != 1 {
		t.Fatalf("%d writes in flight during the outage, want 1 probe at a time", m)
	}
	a.FailNext(0, nil)
	<-fed
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(a.Delivered()); n != 160 {
		t.Fatalf("delivered %d, want 160", n)
	}
	if p.Stats().Down["a"] {
		t.Fatal("still down after recovering")
	}
}

// The in-flight bound in bytes stops reading when the events in flight take
// more memory than allowed, with the count bound far away.
func TestPipelineInFlightBytesBoundReading(t *testing.T) {
	a := outputtest.NewFake("a")
	release := a.Block()
	defer release()
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.MaxInFlight = 1 << 20
		c.MaxInFlightBytes = 20 * (auditlogin.EventOverhead + 200) // about 20 events
		c.ShutdownTimeout = 100 * time.Millisecond
	})
	ch := make(chan []auditlogin.Line)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error)
	go func() { done <- p.Run(ctx, ch) }()
	taken := 0
loop:
	for i := 0; i < 10000; i += 7 {
		select {
		case ch <- oneBatch(i):
			taken += 7
		case <-time.After(300 * time.Millisecond):
			break loop
		}
	}
	// ~20 in flight + the parse stage's one batch of 7 lines and the channel.
	if taken > 20+7*3 {
		t.Fatalf("pipeline took %d lines with a byte bound of about 20 events", taken)
	}
	if taken < 14 {
		t.Fatalf("pipeline took only %d lines", taken)
	}
	stop()
	<-done
}

// A partial batch goes out after the flush interval, without more lines
// and without the input ending.
func TestPipelineFlushesAPartialBatch(t *testing.T) {
	a := outputtest.NewFake("a")
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, nil) // batches of 16, flush every 10ms
	ch := make(chan []auditlogin.Line)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, ch) }()
	ch <- oneBatch(0) // 7 lines
	waitFor(t, "the partial batch delivered", func() bool { return len(a.Delivered()) == 7 })
	waitFor(t, "its offset committed", func() bool { return cp.get(fileA) == 70 })
	stop()
	<-done
	for _, b := range a.Batches() {
		if len(b) > 16 {
			t.Fatalf("a write of %d events, batch_size 16", len(b))
		}
	}
}

// An event refused again and again holds only itself in flight: the other
// events of its batch are acknowledged as each is delivered, so with one
// item of each of ten batches refused, reading still goes on far past
// max_in_flight (two batches): a cluster refusing some items under pressure
// does not stall a small window. The committed offset stays before the
// first refused event until it is delivered.
func TestPipelineRefusedItemHoldsOnlyItself(t *testing.T) {
	a := outputtest.NewFake("a")
	var refusing atomic.Bool
	refusing.Store(true)
	a.FailItems(func(ev *auditlogin.Event) error {
		if i, _ := strconv.Atoi(ev.Thread); i%16 == 3 && i < 160 && refusing.Load() {
			return errors.New("429 rejected (test)")
		}
		return nil
	})
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.MaxInFlight = 32 // two batches of 16
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	const n = 640 // twenty times max_in_flight
	feed(ch, 0, n, nil)
	waitFor(t, "every other event delivered", func() bool { return len(a.Delivered()) == n-10 })
	c0 := p.Stats().LastCommit
	waitFor(t, "the committer to run again", func() bool { return p.Stats().LastCommit.Sub(c0) > 20*time.Millisecond })
	if got := cp.get(fileA); got != 30 {
		t.Fatalf("committed %d with event 3 refused, want 30 (its start)", got)
	}
	refusing.Store(false)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := cp.get(fileA); got != n*10 {
		t.Fatalf("committed %d, want %d", got, n*10)
	}
	seen := map[string]int{}
	for _, ev := range a.Delivered() {
		seen[ev.Thread]++
	}
	if len(seen) != n || len(a.Delivered()) != n {
		t.Fatalf("%d distinct events delivered in %d (want %d once each)", len(seen), len(a.Delivered()), n)
	}
}

// With Adaptive, an output whose round trip stays the same however many
// writes are in flight gets more of them (up to four times its workers)
// and the in-flight bound grows with them; without, it keeps its workers.
// Every event arrives once either way.
func TestPipelineAdaptiveConcurrencyTowardADistantOutput(t *testing.T) {
	for _, adaptive := range []bool{false, true} {
		// A destination behind a long link: every write answered 20 ms
		// later, however many are in flight (it never queues).
		out := outputtest.NewFake("distant")
		out.SetWorkers(2)
		out.HoldWhere(func([]*auditlogin.Event) <-chan struct{} {
			c := make(chan struct{})
			time.AfterFunc(20*time.Millisecond, func() { close(c) })
			return c
		})
		cp := &memCheckpoint{}
		var boundMu sync.Mutex
		var bounds []int // what OnInFlightBound was told
		p := newPipeline(t, []auditlogin.Output{out}, cp, nil, func(c *auditlogin.PipelineConfig) {
			c.Adaptive = adaptive
			c.OnInFlightBound = func(events int) {
				boundMu.Lock()
				bounds = append(bounds, events)
				boundMu.Unlock()
			}
		})
		ch := make(chan []auditlogin.Line)
		done := make(chan error)
		go func() { done <- p.Run(context.Background(), ch) }()
		const n = 3000
		mostInFlight := 0
		go func() {
			for i := 0; i < n; i += 100 {
				feed(ch, i, 100, nil)
			}
			close(ch)
		}()
		for waiting := true; waiting; {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				waiting = false
			case <-time.After(5 * time.Millisecond):
				mostInFlight = max(mostInFlight, p.Stats().MaxInFlight)
			}
		}
		got := map[string]int{}
		for _, ev := range out.Delivered() {
			got[ev.Thread]++
		}
		if len(got) != n {
			t.Fatalf("adaptive %v: %d events delivered, want %d", adaptive, len(got), n)
		}
		for thread, k := range got {
			if k != 1 {
				t.Fatalf("adaptive %v: event %s delivered %d times", adaptive, thread, k)
			}
		}
		most := out.MaxInFlight()
		switch {
		case !adaptive && (most != 2 || mostInFlight != 64):
			t.Errorf("fixed: %d writes at once (want 2), in-flight bound %d (want 64)", most, mostInFlight)
		case adaptive && (most < 6 || mostInFlight <= 64):
			t.Errorf("adaptive: %d writes at once at most (want up to 8), in-flight bound %d at most (want above 64)", most, mostInFlight)
		}
		// OnInFlightBound heard of every change:
		// its largest is the largest bound seen, never the same twice in a
		// row; nothing when the bound is fixed.
		boundMu.Lock()
		told := slices.Clone(bounds)
		boundMu.Unlock()
		switch {
		case !adaptive && len(told) != 0:
			t.Errorf("fixed: OnInFlightBound called with %v", told)
		case adaptive && (len(told) == 0 || slices.Max(told) < mostInFlight):
			t.Errorf("adaptive: OnInFlightBound called with %v, the bound reached %d", told, mostInFlight)
		}
		for i := 1; i < len(told); i++ {
			if told[i] == told[i-1] {
				t.Errorf("OnInFlightBound told %d twice in a row: %v", told[i], told)
			}
		}
		t.Logf("adaptive %v: %d writes at once at most, in-flight bound up to %d, bounds told %v", adaptive, most, mostInFlight, told)
	}
}
