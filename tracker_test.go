package auditlogin

import (
	"context"
	"testing"
)

func TestTrackerCommitsOnlyContiguousPrefix(t *testing.T) {
	tr := newTracker(100)
	id := FileID{Ino: 1}
	var tks []ticket
	for i := int64(0); i < 5; i++ {
		tk, ok := tr.Track(context.Background(), Position{File: id, Path: "p", Offset: 100 + i*10, End: 100 + (i+1)*10})
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
	if tr.InFlight() != 0 {
		t.Fatalf("in flight %d", tr.InFlight())
	}
}

func TestTrackerBlocksWhenFull(t *testing.T) {
	tr := newTracker(2)
	id := FileID{Ino: 1}
	a, _ := tr.Track(context.Background(), Position{File: id, Offset: 0, End: 1})
	tr.Track(context.Background(), Position{File: id, Offset: 1, End: 2})
	if !tr.full() {
		t.Fatal("not full at max")
	}
	got := make(chan bool)
	go func() {
		_, ok := tr.Track(context.Background(), Position{File: id, Offset: 2, End: 3})
		got <- ok
	}()
	select {
	case <-got:
		t.Fatal("Track did not block when full")
	default:
	}
	tr.Ack([]ticket{a})
	if !<-got {
		t.Fatal("Track failed after ack")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, ok := tr.Track(ctx, Position{File: id, Offset: 3, End: 4}); got <- ok }()
	cancel()
	tr.wake()
	if <-got {
		t.Fatal("Track succeeded on a cancelled context while full")
	}
}
