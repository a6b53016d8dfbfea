package auditlogin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/tmpfs"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
	"github.com/auditlogin/auditlogin/spool"
)

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	s, err := spool.Open(spool.Config{Dir: dir, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sortedThreads is the set of threads delivered, sorted, with duplicates.
func sortedThreads(evs []*auditlogin.Event) []string {
	th := threads(evs)
	sort.Slice(th, func(i, j int) bool { return len(th[i]) < len(th[j]) || len(th[i]) == len(th[j]) && th[i] < th[j] })
	return th
}

func wantAll(t *testing.T, name string, evs []*auditlogin.Event, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, th := range threads(evs) {
		seen[th]++
	}
	for i := 0; i < n; i++ {
		if seen[fmt.Sprint(i)] == 0 {
			t.Fatalf("%s: event %d missing (%d delivered)", name, i, len(evs))
		}
	}
}

// One output down: with a spool, the other output receives everything and
// offsets move (reading is not held back); when it comes back, it receives
// everything from its spool, and the spool is empty again.
func TestPipelineDownOutputSpoolsAndTheOtherGoesOn(t *testing.T) {
	a, b := outputtest.NewFake("a"), outputtest.NewFake("b")
	b.FailNext(1<<30, nil)
	dir := t.TempDir()
	sp := openSpool(t, dir)
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a, b}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"b": sp}
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	const n = 3000 // far more than max_in_flight (256 here)
	feed(ch, 0, n, nil)
	waitFor(t, "output a to receive every event while b is down", func() bool { return len(a.Delivered()) >= n })
	waitFor(t, "offsets to be committed to the end while b is down", func() bool { return cp.get(fileA) == n*10 })
	if got := len(b.Delivered()); got != 0 {
		t.Fatalf("b delivered %d while down", got)
	}
	st := p.Stats()
	if !st.Spooling["b"] || st.Spool["b"].Events != n || st.Spool["b"].Oldest.IsZero() || st.Spooling["a"] {
		t.Fatalf("stats while b is down: spooling %v, spool %+v", st.Spooling, st.Spool)
	}
	b.FailNext(0, nil) // b is back
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantAll(t, "b", b.Delivered(), n)
	if got := len(b.Delivered()); got != n {
		t.Fatalf("b delivered %d, want %d (once each)", got, n)
	}
	if st := sp.Stats(); st.Events != 0 || st.Bytes != 0 {
		t.Fatalf("spool after catching up: %+v", st)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(m) != 0 {
		t.Fatalf("segments left: %v", m)
	}
}

// A slow output (working, behind the other) is fed from its spool: the
// fast one does not wait for it.
func TestPipelineSlowOutputIsFedFromItsSpool(t *testing.T) {
	fast, slow := outputtest.NewFake("fast"), outputtest.NewFake("slow")
	gate := make(chan struct{})
	slow.HoldWhere(func([]*auditlogin.Event) <-chan struct{} { return gate })
	sp := openSpool(t, t.TempDir())
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{fast, slow}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"slow": sp}
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	const n = 2000
	feed(ch, 0, n, nil)
	waitFor(t, "the fast output to receive every event while the slow one holds its first write", func() bool {
		return len(fast.Delivered()) >= n
	})
	if sp.Stats().Events == 0 {
		t.Fatal("nothing spooled for the slow output")
	}
	close(gate)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantAll(t, "slow", slow.Delivered(), n)
	if got := cp.get(fileA); got != n*10 {
		t.Fatalf("committed %d, want %d", got, n*10)
	}
}

// What is spooled when the agent stops is delivered by the next run.
func TestPipelineSpoolOutlivesARestart(t *testing.T) {
	dir := t.TempDir()
	b := outputtest.NewFake("b")
	b.FailNext(1<<30, nil)
	sp := openSpool(t, dir)
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{b}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"b": sp}
		c.ShutdownTimeout = 50 * time.Millisecond
	})
	ch := make(chan []auditlogin.Line)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, ch) }()
	const n = 1000
	feed(ch, 0, n, nil)
	waitFor(t, "every offset committed with the only output down", func() bool { return cp.get(fileA) == n*10 })
	stop()
	<-done
	sp.Close()

	b2 := outputtest.NewFake("b")
	sp2 := openSpool(t, dir)
	if sp2.Unread() != n {
		t.Fatalf("%d events in the spool after the restart, want %d", sp2.Unread(), n)
	}
	p2 := newPipeline(t, []auditlogin.Output{b2}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"b": sp2}
	})
	ch2 := make(chan []auditlogin.Line)
	close(ch2) // nothing new to read
	if err := p2.Run(context.Background(), ch2); err != nil {
		t.Fatal(err)
	}
	wantAll(t, "b after the restart", b2.Delivered(), n)
	for _, ev := range b2.Delivered() {
		if ev.Path != "/a.log" || len(ev.Encoded) == 0 || ev.ID == "" {
			t.Fatalf("spooled event read back as %+v", ev)
		}
	}
}

// runAll runs p over lines 0..n-1 to the end.
func runAll(t *testing.T, p *auditlogin.Pipeline, n int) {
	t.Helper()
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	feed(ch, 0, n, nil)
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// feedAsync feeds lines from..from+n in a goroutine and counts the chunks
// taken; done is closed when all are.
func feedAsync(ch chan<- []auditlogin.Line, from, n int) (taken *atomic.Int64, done chan struct{}) {
	taken, done = &atomic.Int64{}, make(chan struct{})
	go func() {
		defer close(done)
		for i := from; i < from+n; i += 7 {
			ch <- oneBatch(i)
			taken.Add(7)
		}
	}()
	return taken, done
}

// downWithSpool runs a pipeline whose one output "b" is down, with sp as
// its spool, fed n lines in the background. finish brings b back, waits
// for the feed and the run to end, and checks that b got every event and
// the offset reached the end.
func downWithSpool(t *testing.T, sp auditlogin.Spool, n int) (p *auditlogin.Pipeline, taken *atomic.Int64, finish func()) {
	t.Helper()
	b := outputtest.NewFake("b")
	b.FailNext(1<<30, nil)
	cp := &memCheckpoint{}
	p = newPipeline(t, []auditlogin.Output{b}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"b": sp}
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	taken, fed := feedAsync(ch, 0, n)
	return p, taken, func() {
		t.Helper()
		b.FailNext(0, nil)
		<-fed
		close(ch)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		wantAll(t, "b", b.Delivered(), n)
		if got := cp.get(fileA); got != int64(n)*10 {
			t.Fatalf("committed %d, want %d", got, n*10)
		}
	}
}

// waitStopped waits until reading has not moved for 100 ms.
func waitStopped(t *testing.T, taken *atomic.Int64) int64 {
	t.Helper()
	waitFor(t, "reading to stop", func() bool {
		before := taken.Load()
		time.Sleep(100 * time.Millisecond)
		return taken.Load() == before
	})
	return taken.Load()
}

// A full spool holds reading back (nothing is dropped) until the output
// takes events again; then everything is delivered.
func TestPipelineFullSpoolBlocksReadingAndResumes(t *testing.T) {
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), MaxBytes: 256 << 10, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 7 * 1000 // about 2 MB encoded: eight times the spool
	_, taken, finish := downWithSpool(t, sp, n)
	// Filled first, then stopped: a pause of a loaded machine is no stop.
	waitFor(t, "the spool to fill", func() bool { return sp.Stats().Bytes >= 192<<10 })
	if got, bytes := waitStopped(t, taken), sp.Stats().Bytes; got >= n || bytes > 256<<10 || bytes < 192<<10 {
		t.Fatalf("reading stopped at %d lines of %d with %d bytes spooled: want it stopped by a full spool (bound 256 KiB)", got, n, bytes)
	}
	finish()
}

// The disk under the spool full: a clear state (SpoolFailing; reading waits
// for the output as it would without a spool), and spooling again once
// there is space, without a restart.
func TestPipelineSpoolOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("AUDITLOGIN_E2E") != "require" {
		t.Skip("needs root (a tmpfs)")
	}
	disk := tmpfs.Mount(t, 1<<20)
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(disk, "spool"), SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	free := tmpfs.Fill(t, disk, 100<<10)
	const n = 7 * 1000
	p, taken, finish := downWithSpool(t, sp, n)
	waitFor(t, "the spool to report that it cannot be written", func() bool { return p.Stats().SpoolFailing["b"] })
	before := waitStopped(t, taken)
	if before >= n || !p.Stats().SpoolFailing["b"] {
		t.Fatalf("with the spool's disk full and the output down: %d lines of %d read, spool failing %v", before, n, p.Stats().SpoolFailing["b"])
	}
	free()
	waitFor(t, "the spool to be written again once there is space", func() bool { return !p.Stats().SpoolFailing["b"] })
	waitFor(t, "reading to go on through the spool, the output still down", func() bool { return taken.Load() > before })
	finish()
}

// An output that keeps up never writes its spool.
func TestPipelineNoSpoolWrittenWhenNothingLags(t *testing.T) {
	a := outputtest.NewFake("a")
	dir := t.TempDir()
	sp := openSpool(t, dir)
	p := newPipeline(t, []auditlogin.Output{a}, &memCheckpoint{}, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"a": sp}
	})
	runAll(t, p, 5000)
	if m, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(m) != 0 || p.Stats().Spooling["a"] {
		t.Fatalf("a single output that keeps up wrote its spool: %v", m)
	}
}

// A stop (a signal) with the output down does not wait the shutdown timeout
// for what is in the spool: it is on disk, and the next start sends it.
func TestPipelineStopDoesNotWaitForTheSpool(t *testing.T) {
	b := outputtest.NewFake("b")
	b.FailNext(1<<30, nil)
	sp := openSpool(t, t.TempDir())
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{b}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"b": sp}
		c.ShutdownTimeout = time.Hour
	})
	ch := make(chan []auditlogin.Line)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, ch) }()
	feed(ch, 0, 1000, nil)
	waitFor(t, "every offset committed, the output down", func() bool { return cp.get(fileA) == 10000 })
	stop()
	waitFor(t, "Run to return after the stop, well before the shutdown timeout", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if sp.Unread()+sp.Stats().Events == 0 {
		t.Fatal("the spool is empty after a stop with the output down")
	}
}

// Events a processor drops are acknowledged (offsets move past them),
// counted, and not shipped.
func TestPipelineKeepDropsAndAcknowledges(t *testing.T) {
	a := outputtest.NewFake("a")
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{a}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Keep = func(ev *auditlogin.Event) bool { return len(ev.Thread)%2 == 1 } // threads 0-9 and 100-999 kept
	})
	runAll(t, p, 1000)
	if got, st := len(a.Delivered()), p.Stats(); got != 910 || st.Dropped != 90 || cp.get(fileA) != 10000 {
		t.Fatalf("delivered %d, dropped %d, committed %d", got, st.Dropped, cp.get(fileA))
	}
}

// An output that fails while its spool is full keeps what it holds in
// memory (it is the one that frees the spool, by reading it back once it
// can deliver): it must not wait for room there. It did, and stayed stuck
// after its destination came back (seen under load in
// TestPipelineFullSpoolBlocksReadingAndResumes).
func TestPipelineOutputFailingWithAFullSpoolRecovers(t *testing.T) {
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), MaxBytes: 16 << 10, SegmentBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	b := outputtest.NewFake("b")
	release := b.Block()
	cp := &memCheckpoint{}
	p := newPipeline(t, []auditlogin.Output{b}, cp, nil, func(c *auditlogin.PipelineConfig) {
		c.Spools = map[string]auditlogin.Spool{"b": sp}
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	// To the output through memory (nothing is known to be wrong yet); its
	// write hangs.
	ch <- oneBatch(0)
	waitFor(t, "the output's first write", func() bool { return b.Calls() >= 1 })
	// Meanwhile the spool fills up (as with events spooled for it before).
	full, cancel := context.WithCancel(context.Background())
	cancel()
	pre := 0
	for _, ev := range outputtest.Events(1000, "pre") {
		if sp.Append(full, []*auditlogin.Event{ev}) != nil {
			break
		}
		pre++
	}
	if pre == 0 || pre == 1000 {
		t.Fatalf("%d events filled a 16 KiB spool", pre)
	}
	// The write fails: the output is down, with a full spool and the
	// batch in memory.
	b.FailNext(1<<30, nil)
	release()
	waitFor(t, "the output to fail again, backing off", func() bool { return b.Calls() >= 3 })
	b.FailNext(0, nil)
	close(ch)
	waitRun(t, done, "the pipeline did not finish after its output came back: stuck on its own full spool")
	var fed []*auditlogin.Event
	got := 0
	for _, ev := range b.Delivered() {
		if ev.User.S == "preuser" {
			got++
		} else {
			fed = append(fed, ev)
		}
	}
	if got != pre {
		t.Errorf("%d of the %d spooled events delivered", got, pre)
	}
	wantAll(t, "b", fed, 7)
	if n := cp.get(fileA); n != 70 {
		t.Errorf("committed %d, want 70", n)
	}
}
