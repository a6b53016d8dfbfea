package tailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

// textParser makes one event per line (Thread = the line) and rejects
// truncated lines, like every real parser must.
type textParser struct{}

func (textParser) Feed(l auditlogin.Line, emit func(auditlogin.Record)) {
	if l.Truncated {
		emit(auditlogin.Record{Pos: l.Pos, Err: errors.New("too long"), Raw: l.Data})
		return
	}
	emit(auditlogin.Record{Pos: l.Pos, Event: &auditlogin.Event{TS: "2026-11-25 10:00:00",
		Type: auditlogin.TypeSuccess, MyHost: "h", Thread: string(l.Data), Path: l.Pos.Path, Offset: l.Pos.Offset}})
}

type deadLetters struct {
	mu sync.Mutex
	n  int
}

func (d *deadLetters) Write(auditlogin.DeadLetterEntry) error {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
	return nil
}
func (d *deadLetters) Sync() error { return nil }
func (d *deadLetters) count() int  { d.mu.Lock(); defer d.mu.Unlock(); return d.n }

type harness struct {
	t      *testing.T
	dir    string
	regDir string
	paths  []string
	out    *outputtest.Fake
	dl     *deadLetters
	reg    *Registry
	cancel context.CancelFunc
	done   chan struct{}
	mod    func(*Config)
	tl     *Tailer
}

func newHarness(t *testing.T, mod func(*Config), patterns ...string) *harness {
	dir := t.TempDir()
	h := &harness{t: t, dir: dir, regDir: t.TempDir(), out: outputtest.NewFake("fake"), dl: &deadLetters{}, mod: mod}
	for _, p := range patterns {
		h.paths = append(h.paths, filepath.Join(dir, p))
	}
	return h
}

func (h *harness) path(name string) string { return filepath.Join(h.dir, name) }

// start runs a tailer and a pipeline, as the agent does.
func (h *harness) start() {
	h.t.Helper()
	reg, err := OpenRegistry(filepath.Join(h.regDir, "registry.json"), 0)
	if err != nil {
		h.t.Fatal(err)
	}
	h.reg = reg
	cfg := Config{
		Inputs:       []Input{{Name: "test", Paths: h.paths, NewParser: func() auditlogin.Parser { return textParser{} }}},
		Registry:     reg,
		ScanInterval: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		RotateWait: 100 * time.Millisecond, CloseInactive: time.Minute,
		Recycled: true, // as the agent runs it
	}
	if h.mod != nil {
		h.mod(&cfg)
	}
	tl := New(cfg)
	h.tl = tl
	p, err := auditlogin.NewPipeline(auditlogin.PipelineConfig{
		Recycle: tl.Recycle,
		Outputs: []auditlogin.Output{h.out}, Checkpoint: reg, DeadLetter: h.dl,
		BatchSize: 8, FlushInterval: 5 * time.Millisecond, CommitInterval: 10 * time.Millisecond,
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan struct{})
	ch := make(chan []auditlogin.Line, 4)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tl.Run(ctx, ch) }()
	go func() {
		defer wg.Done()
		if err := p.Run(ctx, ch); err != nil {
			h.t.Errorf("pipeline: %v", err)
		}
	}()
	go func() { wg.Wait(); close(h.done) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Fatal("agent did not stop")
	}
	h.cancel = nil
}

func (h *harness) lines() []string {
	var out []string
	for _, ev := range h.out.Delivered() {
		out = append(out, ev.Thread)
	}
	return out
}

// waitFor waits until the delivered lines are exactly want (in order when
// ordered), failing on timeout.
func (h *harness) waitFor(want []string) {
	h.t.Helper()
	deadline := time.Now().Add(testDeadline)
	for time.Now().Before(deadline) {
		if len(h.lines()) >= len(want) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond) // and nothing more arrives
	got := h.lines()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		h.t.Fatalf("delivered %v\nwant      %v", got, want)
	}
}

// waitCommitted waits until the registry file (what a restart would read)
// holds offset for the file now at path.
// testDeadline bounds every wait of these tests: a deadline for failing,
// not a wait (3x what failed once under coverage on 2 busy cores).
const testDeadline = 15 * time.Second

// until polls cond until it holds, or fails the test after testDeadline.
func (h *harness) until(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLines waits until at least n lines were delivered (the caller then
// checks which); it does not fail by itself, the caller's assertion does.
func (h *harness) waitLines(n int) {
	deadline := time.Now().Add(testDeadline)
	for len(h.lines()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) waitCommitted(path string, offset int64) {
	h.t.Helper()
	deadline := time.Now().Add(testDeadline)
	var got int64
	for time.Now().Before(deadline) {
		if reg, err := OpenRegistry(h.reg.Path(), 0); err == nil {
			if _, got, _ = reg.Lookup(path); got == offset {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("committed offset of %s is %d, want %d", path, got, offset)
}

// waitCommittedContent is waitCommitted for a rotated copy, whose lines are
// committed under the identity of the file it was copied from: an entry
// whose first bytes are the copy's.
func (h *harness) waitCommittedContent(path string, offset int64) {
	h.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	deadline := time.Now().Add(testDeadline)
	var got int64
	for time.Now().Before(deadline) {
		if reg, err := OpenRegistry(h.reg.Path(), 0); err == nil {
			for id, e := range reg.Entries() {
				if fp, _ := fingerprint(f, id.FPLen); fp == id.FP && e.Offset >= got {
					got = e.Offset
				}
			}
			if got == offset {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("committed offset of the content of %s is %d, want %d", path, got, offset)
}

func (h *harness) idOf(path string) auditlogin.FileID {
	h.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	id, _, ok, err := identify(f, DefaultFingerprintSize)
	if err != nil || !ok {
		h.t.Fatalf("identify %s: %v", path, err)
	}
	return id
}

func size(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func appendTo(t *testing.T, path string, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

func text(lines []string) string { return strings.Join(lines, "\n") + "\n" }

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// copyTruncate does what logrotate's copytruncate does: copy, then truncate
// the original in place.
func copyTruncate(t *testing.T, path, to string) {
	t.Helper()
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

func TestAppend(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 3)))
	h.start()
	h.waitFor(seq("a", 0, 3))
	appendTo(t, p, text(seq("a", 3, 50)))
	h.waitFor(seq("a", 0, 50))
	h.waitCommitted(p, size(t, p))
}

// Read buffers come back from the pipeline and are read into again: with
// 4 KiB reads, 3000 lines written in bursts take many reads but few
// buffers, and every line arrives whole, in order.
func TestRecycledReadBuffersKeepLinesWhole(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ReadSize = 4096 }, "a.log")
	var want []string
	for i := range 3000 {
		want = append(want, fmt.Sprintf("line-%d-%s", i, strings.Repeat("x", i%97)))
	}
	appendTo(t, h.path("a.log"), text(want[:1000]))
	h.start()
	h.waitLines(1000)
	for i := 1000; i < 3000; i += 250 {
		appendTo(t, h.path("a.log"), text(want[i:i+250]))
	}
	h.waitFor(want)
	h.tl.chunkMu.Lock()
	free, lent := len(h.tl.free), len(h.tl.lent)
	h.tl.chunkMu.Unlock()
	if free == 0 {
		t.Fatal("no read buffer came back for reuse")
	}
	if lent > 4 {
		t.Fatalf("%d read buffers still lent out after every line was delivered", lent)
	}
}

func TestPartialWrite(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, "first\nsec")
	h.start()
	h.waitFor([]string{"first"})
	h.waitCommitted(p, 6) // not past the half-written line
	appendTo(t, p, "ond\nthird\n")
	h.waitFor([]string{"first", "second", "third"})
	h.waitCommitted(p, size(t, p))
}

func TestRotateRename(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	// The server holds its descriptor across the rename, as mariadb's
	// server_audit or any "create"-style rotation does.
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString(text(seq("a", 0, 5)))
	h.start()
	h.waitFor(seq("a", 0, 5))
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	w.WriteString(text(seq("a", 5, 8))) // after the rename, before the reopen
	w.Close()
	appendTo(t, p, text(seq("b", 0, 4)))
	h.waitLines(12)
	got := h.lines()
	// Both files are complete and in order each; they may interleave.
	var as, bs []string
	for _, l := range got {
		if l[0] == 'a' {
			as = append(as, l)
		} else {
			bs = append(bs, l)
		}
	}
	if strings.Join(as, ",") != strings.Join(seq("a", 0, 8), ",") || strings.Join(bs, ",") != strings.Join(seq("b", 0, 4), ",") {
		t.Fatalf("got %v", got)
	}
	h.waitCommitted(p+".1", size(t, p+".1"))
	h.waitCommitted(p, size(t, p))
}

// copyTruncateScenario writes lines, lets the agent read them, then appends
// more and rotates with copytruncate at once (so the last lines are likely in
// the rotated copy only), then writes newLines to the live file.
func copyTruncateScenario(t *testing.T, newLines []string) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 10)))
	h.start()
	h.waitFor(seq("a", 0, 10))
	appendTo(t, p, text(seq("a", 10, 13)))
	copyTruncate(t, p, p+".1")
	appendTo(t, p, text(newLines))
	h.waitFor(cat(seq("a", 0, 13), newLines))
	h.waitCommitted(p, size(t, p))
	h.waitCommittedContent(p+".1", size(t, p+".1"))
}

func TestCopyTruncateSmaller(t *testing.T) { copyTruncateScenario(t, seq("b", 0, 2)) }

// The new content is exactly as long as the old: only the fingerprint tells.
func TestCopyTruncateSameSize(t *testing.T) { copyTruncateScenario(t, seq("b", 0, 13)) }

// Rewritten to exactly the length already read, between two looks (here in
// place, so that no look can see it shorter): the first bytes tell, without
// waiting for the next write. (This case was seen in about 1 of 40 runs of
// TestCopyTruncateSameSize, when both the copy's truncation and the new
// lines fell between two polls.)
func TestRewrittenToTheSameSizeBetweenTwoLooks(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 13)))
	h.start()
	h.waitFor(seq("a", 0, 13))
	h.waitCommitted(p, size(t, p))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(text(seq("b", 0, 13))), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h.waitFor(cat(seq("a", 0, 13), seq("b", 0, 13)))
	h.waitCommitted(p, size(t, p))
}

// The new content is longer than the old offset: size alone cannot tell.
func TestCopyTruncateLarger(t *testing.T) { copyTruncateScenario(t, seq("b", 0, 40)) }

// Truncated while the agent was down: at start, the inode is known with other
// first bytes; the rest of the old content comes from the rotated copy.
func TestCopyTruncateWhileStopped(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 10)))
	h.start()
	h.waitFor(seq("a", 0, 10))
	h.waitCommitted(p, size(t, p))
	h.stop()
	appendTo(t, p, text(seq("a", 10, 15)))
	copyTruncate(t, p, p+".1")
	appendTo(t, p, text(seq("b", 0, 3)))
	h.start()
	h.waitLines(18)
	got := h.lines()
	if len(got) != 18 {
		t.Fatalf("got %v", got)
	}
	seen := map[string]int{}
	for _, l := range got {
		seen[l]++
	}
	for _, l := range cat(seq("a", 0, 15), seq("b", 0, 3)) {
		if seen[l] != 1 {
			t.Errorf("%s delivered %d times", l, seen[l])
		}
	}
}

func TestDelete(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(text(seq("a", 0, 3)))
	h.start()
	h.waitFor(seq("a", 0, 3))
	os.Remove(p)
	w.WriteString(text(seq("a", 3, 5))) // still written to the open, deleted file
	w.Close()
	h.waitFor(seq("a", 0, 5))
}

func TestDeleteRecreate(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 3)))
	h.start()
	h.waitFor(seq("a", 0, 3))
	os.Remove(p)
	appendTo(t, p, text(seq("b", 0, 3)))
	h.waitFor(cat(seq("a", 0, 3), seq("b", 0, 3)))
	h.waitCommitted(p, size(t, p))
}

func TestSymlink(t *testing.T) {
	h := newHarness(t, nil, "current.log")
	real1, link := h.path("real-1.log"), h.path("current.log")
	appendTo(t, real1, text(seq("a", 0, 3)))
	if err := os.Symlink(real1, link); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitFor(seq("a", 0, 3))
	real2 := h.path("real-2.log")
	appendTo(t, real2, text(seq("b", 0, 2)))
	tmp := h.path("tmp-link")
	os.Symlink(real2, tmp)
	os.Rename(tmp, link) // atomic retarget
	h.waitFor(cat(seq("a", 0, 3), seq("b", 0, 2)))
	h.waitCommitted(link, size(t, real2))
}

func TestLongLine(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxLine = 1000; c.ReadSize = 256 }, "a.log")
	p := h.path("a.log")
	appendTo(t, p, "before\n"+strings.Repeat("x", 5000)+"\nafter\n"+strings.Repeat("y", 700)+"\n")
	h.start()
	h.waitFor([]string{"before", "after", strings.Repeat("y", 700)})
	h.waitCommitted(p, size(t, p))
	if h.dl.count() != 1 {
		t.Fatalf("dead letters %d, want 1 for the over-long line", h.dl.count())
	}
}

// The line limit is exact: a line of max_line_bytes (newline not counted) is
// whole, one byte more is cut and dead-lettered, whether the line arrives at
// once or its newline comes in a later write, and whatever the read size.
func TestLongLineLimitIsExact(t *testing.T) {
	for _, readSize := range []int{32, 100, 101, 4096} {
		t.Run(fmt.Sprint(readSize), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxLine = 100; c.ReadSize = readSize }, "a.log")
			p := h.path("a.log")
			a, b, c, d := strings.Repeat("a", 100), strings.Repeat("b", 101), strings.Repeat("c", 100), strings.Repeat("d", 101)
			appendTo(t, p, a+"\n"+b+"\n")
			h.start()
			h.waitFor([]string{a})
			h.until("the 101-byte line dead-lettered", func() bool { return h.dl.count() == 1 })
			appendTo(t, p, c) // no newline yet: waits
			// Forty polls' time for the tailer to see the partial line (a
			// slower machine makes this case weaker, never failing).
			time.Sleep(200 * time.Millisecond)
			appendTo(t, p, "\n"+d)
			h.waitFor([]string{a, c})
			appendTo(t, p, "\n")
			h.waitCommitted(p, size(t, p))
			if got := h.dl.count(); got != 2 {
				t.Fatalf("dead letters %d, want 2 (the 101-byte lines)", got)
			}
			if got := h.lines(); len(got) != 2 || got[0] != a || got[1] != c {
				t.Fatalf("delivered %q", got)
			}
		})
	}
}

func TestResumeFromCheckpoint(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 20)))
	h.start()
	h.waitFor(seq("a", 0, 20))
	h.waitCommitted(p, size(t, p))
	h.stop()
	appendTo(t, p, text(seq("a", 20, 25)))
	h.start()
	h.waitFor(seq("a", 0, 25)) // nothing twice
	h.waitCommitted(p, size(t, p))
}

// A registry damaged by hand or by a broken disk (a negative offset, or one
// past the file's end) does not wedge the file: it is read again from its
// start, with a warning.
func TestDamagedRegistryOffsetRereadsTheFile(t *testing.T) {
	for _, bad := range []int64{-5, 1 << 40} {
		h := newHarness(t, nil, "a.log")
		p := h.path("a.log")
		appendTo(t, p, text(seq("a", 0, 10)))
		h.start()
		h.waitFor(seq("a", 0, 10))
		h.waitCommitted(p, size(t, p))
		h.stop()
		regPath := filepath.Join(h.regDir, "registry.json")
		data, err := os.ReadFile(regPath)
		if err != nil {
			t.Fatal(err)
		}
		var rf map[string]any
		json.Unmarshal(data, &rf)
		rf["files"].([]any)[0].(map[string]any)["offset"] = bad
		data, _ = json.Marshal(rf)
		os.WriteFile(regPath, data, 0o644)
		appendTo(t, p, text(seq("a", 10, 12)))
		h.start()
		h.waitFor(cat(seq("a", 0, 10), seq("a", 0, 12))) // read again from the start, once
		h.waitCommitted(p, size(t, p))
		h.stop()
	}
}

func TestRotateWhileOutputBlocked(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 5)))
	h.start()
	h.waitFor(seq("a", 0, 5))
	h.waitCommitted(p, size(t, p))
	release := h.out.Block()
	appendTo(t, p, text(seq("a", 5, 10)))
	time.Sleep(50 * time.Millisecond)
	os.Rename(p, p+".1")
	appendTo(t, p, text(seq("b", 0, 5)))
	time.Sleep(300 * time.Millisecond) // past RotateWait while blocked
	if n := len(h.lines()); n != 5 {
		t.Fatalf("delivered %d while blocked", n)
	}
	release()
	h.waitLines(15)
	seen := map[string]int{}
	for _, l := range h.lines() {
		seen[l]++
	}
	for _, l := range cat(seq("a", 0, 10), seq("b", 0, 5)) {
		if seen[l] != 1 {
			t.Errorf("%s delivered %d times", l, seen[l])
		}
	}
	h.waitCommitted(p+".1", size(t, p+".1"))
	h.waitCommitted(p, size(t, p))
}

func TestGlobPicksUpNewFiles(t *testing.T) {
	h := newHarness(t, nil, "*.log")
	appendTo(t, h.path("one.log"), text(seq("a", 0, 2)))
	h.start()
	h.waitFor(seq("a", 0, 2))
	appendTo(t, h.path("two.log"), text(seq("b", 0, 2)))
	h.waitFor(cat(seq("a", 0, 2), seq("b", 0, 2)))
}

// A registry entry for this inode with other first bytes (a reused inode)
// must not be taken for this file: it is read from the start.
func TestReusedInodeIsNotMistaken(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 5)))
	id := h.idOf(p)
	reg, err := OpenRegistry(filepath.Join(h.regDir, "registry.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	stale := auditlogin.FileID{Dev: id.Dev, Ino: id.Ino, FPLen: id.FPLen, FP: strings.Repeat("0", 64)}
	if err := reg.Commit(map[auditlogin.FileID]auditlogin.Committed{stale: {Path: p, Offset: 20}}); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitFor(seq("a", 0, 5))
	h.waitCommitted(p, size(t, p))
}

// StartAtEnd skips what a file already holds at the first scan.
func TestStartAtEnd(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Inputs[0].StartAtEnd = true }, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("old", 0, 5)))
	h.start()
	// The first scan has taken the file's end when it is registered there
	// (a condition, not a guess at how long a scan takes).
	end := size(t, p)
	h.until("the file registered at its end", func() bool {
		_, off, ok := h.reg.Lookup(p)
		return ok && off == end
	})
	appendTo(t, p, text(seq("new", 0, 2)))
	h.waitFor(seq("new", 0, 2))
}

func TestOnceReadsToEndAndStops(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Once = true }, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 100))+"partial")
	h.start()
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Once did not stop")
	}
	h.cancel = nil
	if got := h.lines(); len(got) != 100 {
		t.Fatalf("got %d lines", len(got))
	}
	reg, _ := OpenRegistry(h.reg.Path(), 0)
	if _, off, _ := reg.Lookup(p); off != size(t, p)-int64(len("partial")) {
		t.Fatalf("committed %d: must stop before the unterminated line", off)
	}
}

func TestRegistryIsAtomicAndReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "registry.json")
	r, err := OpenRegistry(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := auditlogin.FileID{Dev: 1, Ino: 2, FPLen: 3, FP: "abc"}
	if err := r.Commit(map[auditlogin.FileID]auditlogin.Committed{id: {Path: "/x", Offset: 42}}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("temp files left behind: %v", ents)
	}
	r2, err := OpenRegistry(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if off, ok := r2.Get(id); !ok || off != 42 {
		t.Fatalf("reloaded %d %v", off, ok)
	}
	os.WriteFile(path, []byte("{not json"), 0o644)
	if _, err := OpenRegistry(path, 0); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Fatalf("corrupt registry must fail clearly, got %v", err)
	}
}

// Renamed while the agent was down, with a glob that names only the live
// file: the rest of the renamed file is found beside it and read first.
func TestRotateRenameWhileStopped(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 10)))
	h.start()
	h.waitFor(seq("a", 0, 10))
	h.waitCommitted(p, size(t, p))
	h.stop()
	appendTo(t, p, text(seq("a", 10, 15)))
	os.Rename(p, p+".1")
	appendTo(t, p, text(seq("b", 0, 3)))
	h.start()
	h.waitFor(cat(seq("a", 0, 15), seq("b", 0, 3)))
	h.waitCommitted(p+".1", size(t, p+".1"))
	h.waitCommitted(p, size(t, p))
	// A second restart reads nothing again.
	h.stop()
	h.start()
	h.waitFor(cat(seq("a", 0, 15), seq("b", 0, 3)))
}

// Removed while the agent was down: nothing to read, no crash, and the live
// file that replaces it is read.
func TestDeletedWhileStopped(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 3)))
	h.start()
	h.waitFor(seq("a", 0, 3))
	h.waitCommitted(p, size(t, p))
	h.stop()
	os.Remove(p)
	appendTo(t, p, text(seq("b", 0, 2)))
	h.start()
	h.waitFor(cat(seq("a", 0, 3), seq("b", 0, 2)))
}

// Files rotated away while the agent was stopped, one of which it never saw
// at all (created and rotated while it was down), are all read on restart,
// each line once, before the live file.
func TestUnseenRotatedFilesAreRead(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 5)))
	h.start()
	h.waitFor(seq("a", 0, 5))
	h.waitCommitted(p, size(t, p))
	h.stop()
	appendTo(t, p, text(seq("a", 5, 8)))
	os.Rename(p, p+".1") // rename rotation
	time.Sleep(20 * time.Millisecond)
	appendTo(t, p, text(seq("b", 0, 6))) // a file the agent never sees...
	os.Rename(p+".1", p+".2")
	copyTruncate(t, p, p+".1") // ...copied away and truncated
	appendTo(t, p, text(seq("c", 0, 4)))
	h.start()
	want := cat(seq("a", 0, 8), seq("b", 0, 6), seq("c", 0, 4))
	h.waitFor(want)
	h.stop()
	h.start() // and nothing again
	h.waitFor(want)
}

// A file rotated away and read to its end while the output is down must not
// be marked done in the registry before its lines are delivered: a restart
// then still finds and ships them.
func TestRotatedFileIsNotMarkedDoneBeforeDelivery(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 5)))
	h.start()
	h.waitFor(seq("a", 0, 5))
	h.waitCommitted(p, size(t, p))
	release := h.out.Block()
	appendTo(t, p, text(seq("a", 5, 10)))
	os.Rename(p, p+".1")
	time.Sleep(400 * time.Millisecond)   // past rotate_wait: a.log.1 is read to its end and closed
	appendTo(t, p, text(seq("b", 0, 2))) // a new file: registered at once, the registry is written
	time.Sleep(100 * time.Millisecond)
	h.stop() // a.log.1's last lines were never delivered
	release()
	h.start()
	h.waitLines(12)
	seen := map[string]bool{}
	for _, l := range h.lines() {
		seen[l] = true
	}
	for _, l := range cat(seq("a", 0, 10), seq("b", 0, 2)) {
		if !seen[l] {
			t.Errorf("%s lost", l)
		}
	}
}

// An entry keeps the path it was registered under: commits of records read
// from a rotated copy (which carry the copy's path) must not move it, or a
// restart would not find the entry by its input's globs.
func TestRegistryEntryKeepsItsPath(t *testing.T) {
	r, err := OpenRegistry(filepath.Join(t.TempDir(), "r.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	id := auditlogin.FileID{Dev: 1, Ino: 2, FPLen: 3, FP: "x"}
	if err := r.Register(id, "/var/lib/mysql/audit_login.log", 0); err != nil {
		t.Fatal(err)
	}
	r.Commit(map[auditlogin.FileID]auditlogin.Committed{id: {Path: "/var/lib/mysql/audit_login.log.1", Offset: 500}})
	e := r.Entries()[id]
	if e.Path != "/var/lib/mysql/audit_login.log" || e.Offset != 500 {
		t.Fatalf("entry %+v: the path moved to the copy's", e)
	}
}

// idleParser records Idle calls.
type idleParser struct {
	textParser
	mu    *sync.Mutex
	idles *int
}

func (p idleParser) Idle(emit func(auditlogin.Record)) { p.mu.Lock(); *p.idles++; p.mu.Unlock() }

// After IdleAfter with nothing new, the parser is told once (and again only
// after new data).
func TestIdleIsToldOncePerQuietSpell(t *testing.T) {
	var mu sync.Mutex
	idles := 0
	h := newHarness(t, func(c *Config) {
		c.IdleAfter = 100 * time.Millisecond
		c.Inputs[0].NewParser = func() auditlogin.Parser { return idleParser{mu: &mu, idles: &idles} }
	}, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 2)))
	h.start()
	h.waitFor(seq("a", 0, 2))
	told := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return idles >= n }
	}
	h.until("the first idle signal", told(1))
	time.Sleep(4 * 100 * time.Millisecond) // four more quiet spells' worth: none may be told again
	mu.Lock()
	n := idles
	mu.Unlock()
	if n != 1 {
		t.Fatalf("told %d times in one quiet spell, want 1", n)
	}
	appendTo(t, p, text(seq("a", 2, 3)))
	h.until("the second idle signal", told(2))
	time.Sleep(4 * 100 * time.Millisecond)
	mu.Lock()
	n = idles
	mu.Unlock()
	if n != 2 {
		t.Fatalf("told %d times after a second quiet spell, want 2", n)
	}
}

// idOfLen is the identity of the file at path with its first n bytes.
func idOfLen(t *testing.T, path string, n int) auditlogin.FileID {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, _, _, err := identify(f, n)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// offsetOf is the byte offset of line i of lines (each line plus newline).
func offsetOf(lines []string, i int) int64 {
	n := 0
	for _, l := range lines[:i] {
		n += len(l) + 1
	}
	return int64(n)
}

// When several registry entries know a file, the furthest committed offset
// is where reading resumes (anything before it was shipped under one of
// them): for the file's own inode under two fingerprint lengths, and for a
// copy (another inode) of content two earlier copies were read from.
func TestSeveralEntriesResumeAtTheFurthest(t *testing.T) {
	lines := seq("a", 0, 10)
	t.Run("same inode", func(t *testing.T) {
		h := newHarness(t, nil, "a.log")
		p := h.path("a.log")
		appendTo(t, p, text(lines))
		reg, err := OpenRegistry(filepath.Join(h.regDir, "registry.json"), 0)
		if err != nil {
			t.Fatal(err)
		}
		// Known under 8 bytes at line 6, under 4 bytes at line 2 (the file
		// was shorter when first seen), in either order in the map.
		reg.Register(idOfLen(t, p, 8), p, offsetOf(lines, 6))
		reg.Register(idOfLen(t, p, 4), p, offsetOf(lines, 2))
		h.start()
		h.waitFor(lines[6:])
	})
	t.Run("copies", func(t *testing.T) {
		h := newHarness(t, nil, "a.log")
		p := h.path("a.log")
		x, y := h.path("x.old"), h.path("y.old")
		appendTo(t, x, text(lines))
		appendTo(t, y, text(lines))
		reg, err := OpenRegistry(filepath.Join(h.regDir, "registry.json"), 0)
		if err != nil {
			t.Fatal(err)
		}
		reg.Register(idOfLen(t, x, DefaultFingerprintSize), x, offsetOf(lines, 2))
		reg.Register(idOfLen(t, y, DefaultFingerprintSize), y, offsetOf(lines, 7))
		appendTo(t, p, text(lines)) // a third copy, where the input looks
		h.start()
		h.waitFor(lines[7:])
	})
}

// A file created at the followed path and rotated away between two scans
// (never seen there) is found beside the path when the scan finds the next
// file at it, and read before that one.
func TestFileRotatedAwayBetweenScansIsRead(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ScanInterval = 500 * time.Millisecond }, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 5)))
	h.start()
	h.waitFor(seq("a", 0, 5))
	rotateTwice(t, p) // b000-b003 live a moment at a.log, rotated away before a scan comes
	h.waitForAllOnce(p, cat(seq("a", 0, 5), seq("b", 0, 4), seq("c", 0, 3)))
}

// rotateTwice renames p to p.1, writes b000-b003 to a new p, renames that
// away too (p.1 to p.2, p to p.1), and writes c000-c002 to a new p: the file
// in between is never at p for long.
func rotateTwice(t *testing.T, p string) {
	t.Helper()
	os.Rename(p, p+".1")
	appendTo(t, p, text(seq("b", 0, 4)))
	os.Rename(p+".1", p+".2")
	os.Rename(p, p+".1")
	appendTo(t, p, text(seq("c", 0, 3)))
}

// waitForAllOnce waits for want, for p committed to its end, and checks that
// a restart then reads nothing again.
func (h *harness) waitForAllOnce(p string, want []string) {
	h.t.Helper()
	h.waitFor(want)
	h.waitCommitted(p, size(h.t, p))
	h.stop()
	h.start()
	h.waitFor(want)
}

// Rotated twice while the agent was down, the first file then deleted (read
// to its end, logrotate may remove it): the file in between, which the agent
// never saw, is still found and read, even when it was last written before
// the registry last updated its predecessor's entry (a late commit under
// load), which is all a restart knew of that predecessor before.
func TestUnseenFileIsFoundAfterItsPredecessorIsDeleted(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 5)))
	h.start()
	h.waitFor(seq("a", 0, 5))
	h.waitCommitted(p, size(t, p))
	first := h.idOf(p)
	h.stop()
	rotateTwice(t, p)
	os.Remove(p + ".2")
	reg, err := OpenRegistry(h.reg.Path(), 0)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := reg.Entries()[first]
	if !ok {
		t.Fatal("the first file has no registry entry")
	}
	written := e.Updated.Add(-100 * time.Millisecond)
	if err := os.Chtimes(p+".1", written, written); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitForAllOnce(p, cat(seq("a", 0, 5), seq("b", 0, 4), seq("c", 0, 3)))
}

// A compressed rotated file (logrotate's compress) beside the path is not
// read as an unseen rotated file.
func TestCompressedRotatedFileIsNotRead(t *testing.T) {
	h := newHarness(t, nil, "a.log")
	p := h.path("a.log")
	appendTo(t, p, text(seq("a", 0, 2)))
	h.start()
	h.waitFor(seq("a", 0, 2))
	h.waitCommitted(p, size(t, p))
	h.stop()
	os.Rename(p, p+".1")
	appendTo(t, p+".2.gz", "\x1f\x8b\x08\x00garbage\n")
	appendTo(t, p, text(seq("c", 0, 3)))
	h.start()
	h.waitFor(cat(seq("a", 0, 2), seq("c", 0, 3)))
}

// A path's seen time goes with the last registry entry that names the path
// (pruned cleanAfter after its file went): dated names do not pile up.
func TestSeenTimesArePrunedWithTheirEntries(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	appendTo(t, p, "x\n")
	reg, err := OpenRegistry(filepath.Join(dir, "registry.json"), time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	id, _, _, _ := identify(f, DefaultFingerprintSize)
	f.Close()
	reg.Register(id, p, 0)
	now := time.Now()
	reg.SetSeen(p, now)
	reg.SetSeen(filepath.Join(dir, "gone.log"), now)
	if err := reg.Commit(map[auditlogin.FileID]auditlogin.Committed{id: {Path: p, Offset: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Seen(filepath.Join(dir, "gone.log")); ok {
		t.Fatal("the seen time of a path no entry names was kept")
	}
	if _, ok := reg.Seen(p); !ok {
		t.Fatal("the seen time of a followed file's path was dropped")
	}
	os.Remove(p)
	if err := reg.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Seen(p); ok {
		t.Fatal("the seen time outlived the path's last entry")
	}
	again, err := OpenRegistry(filepath.Join(dir, "registry.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Seen(p); ok {
		t.Fatal("the written registry still holds the seen time")
	}
}
