package auditlogin

import (
	"context"
	"testing"
	"time"
)

func TestTrackerCommitsOnlyContiguousPrefix(t *testing.T) {
	tr := newTracker(100, 0)
	id := FileID{Ino: 1}
	var tks []ticket
	for i := int64(0); i < 5; i++ {
		tk, ok := tr.Track(context.Background(), Position{File: id, Path: "p", Offset: 100 + i*10, End: 100 + (i+1)*10}, 10)
		if !ok {
			t.Fatal("track failed")
		}
		tks = append(tks, tk)
	}
	if d := tr.Dirty(); d[id].Offset != 100 {
		t.Fatalf("initial committed %v, want 100 (where reading started)", d)
	}
	tr.Ack([]ticket{tks[1], tks[3]})
	if d := tr.Dirty(); len(d) != 0 {
		t.Fatalf("acks after a gap moved the offset: %v", d)
	}
	tr.Ack([]ticket{tks[0]})
	if d := tr.Dirty(); d[id].Offset != 120 {
		t.Fatalf("committed %v, want 120 (records 0 and 1)", d)
	}
	tr.Ack([]ticket{tks[4], tks[2]})
	if d := tr.Dirty(); d[id].Offset != 150 {
		t.Fatalf("committed %v, want 150", d)
	}
	if tr.InFlight() != 0 || tr.load().bytes != 0 {
		t.Fatalf("in flight %d records, %d bytes", tr.InFlight(), tr.load().bytes)
	}
}

// waitBlocked waits until n Track calls are blocked inside the tracker (not
// merely not yet scheduled), or fails.
func waitBlocked(t *testing.T, tr *tracker, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Waiting() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Track call(s) blocked, want %d", tr.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// assertStillBlocked checks that a Track call has not returned; it is only
// meaningful after waitBlocked has seen the call inside cond.Wait.
func assertStillBlocked(t *testing.T, got <-chan bool, why string) {
	t.Helper()
	select {
	case <-got:
		t.Fatal(why)
	default:
	}
}

func TestTrackerBlocksWhenFull(t *testing.T) {
	tr := newTracker(2, 0)
	id := FileID{Ino: 1}
	a, _ := tr.Track(context.Background(), Position{File: id, Offset: 0, End: 1}, 1)
	tr.Track(context.Background(), Position{File: id, Offset: 1, End: 2}, 1)
	if !tr.full() {
		t.Fatal("not full at max")
	}
	if l := tr.load(); l.blocked != 0 {
		t.Fatalf("Track calls that found room counted %v blocked", l.blocked)
	}
	got := make(chan bool)
	go func() {
		_, ok := tr.Track(context.Background(), Position{File: id, Offset: 2, End: 3}, 1)
		got <- ok
	}()
	waitBlocked(t, tr, 1)
	assertStillBlocked(t, got, "Track returned while the tracker was full")
	if tr.InFlight() != 2 {
		t.Fatalf("in flight %d while full, want 2", tr.InFlight())
	}
	// The wait in progress counts, and grows.
	first := tr.load()
	if first.records != 2 || first.maxRecords != 2 || first.bytes != 2 || first.maxBytes != 0 || first.blocked <= 0 {
		t.Fatalf("load while blocked: %+v", first)
	}
	for deadline := time.Now().Add(10 * time.Second); tr.load().blocked <= first.blocked; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the blocked time does not grow while Track waits")
		}
	}
	tr.Ack([]ticket{a})
	if !<-got {
		t.Fatal("Track failed after ack")
	}
	after := tr.load()
	if after.blocked < first.blocked {
		t.Fatalf("blocked %v after the wait, %v during it", after.blocked, first.blocked)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, ok := tr.Track(ctx, Position{File: id, Offset: 3, End: 4}, 1); got <- ok }()
	waitBlocked(t, tr, 1)
	cancel()
	tr.wake()
	if <-got {
		t.Fatal("Track succeeded on a cancelled context while full")
	}
}

// The byte bound blocks as the count bound does; one record is always let in
// when nothing is in flight, however large.
func TestTrackerBlocksOnBytes(t *testing.T) {
	tr := newTracker(1000, 100)
	id := FileID{Ino: 1}
	huge, ok := tr.Track(context.Background(), Position{File: id, Offset: 0, End: 1}, 500)
	if !ok {
		t.Fatal("a record larger than the byte bound was refused with nothing in flight")
	}
	got := make(chan bool)
	go func() {
		_, ok := tr.Track(context.Background(), Position{File: id, Offset: 1, End: 2}, 10)
		got <- ok
	}()
	waitBlocked(t, tr, 1)
	assertStillBlocked(t, got, "Track returned while the byte bound was exceeded")
	tr.Ack([]ticket{huge})
	if !<-got {
		t.Fatal("Track failed after ack")
	}
	if tr.load().bytes != 10 {
		t.Fatalf("in flight bytes %d, want 10", tr.load().bytes)
	}
	// 9 more of 10 bytes fill it to 100: the next one waits.
	for i := int64(2); i < 11; i++ {
		if _, ok := tr.Track(context.Background(), Position{File: id, Offset: i, End: i + 1}, 10); !ok {
			t.Fatal(i)
		}
	}
	if !tr.full() {
		t.Fatalf("not full at %d bytes of 100", tr.load().bytes)
	}
}

// A file forgotten by Dirty (nothing in flight) and read again is tracked
// again: the tracker's cache of the last file must not outlive the entry.
func TestTrackerFileForgottenThenReadAgain(t *testing.T) {
	tr := newTracker(100, 0)
	id := FileID{Ino: 1, FP: "ab"}
	tk, _ := tr.TryTrack(Position{File: id, Path: "p", Offset: 0, End: 10}, 10)
	tr.Ack([]ticket{tk})
	if d := tr.Dirty(); d[id].Offset != 10 {
		t.Fatalf("committed %v, want 10", d)
	}
	tr.Dirty() // nothing in flight, recorded: forgotten
	tk, _ = tr.TryTrack(Position{File: id, Path: "p", Offset: 10, End: 30}, 10)
	tr.Ack([]ticket{tk})
	if d := tr.Dirty(); d[id].Offset != 30 {
		t.Fatalf("after the file was forgotten and read again: committed %v, want 30", d)
	}
}
