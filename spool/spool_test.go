package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

func open(t *testing.T, dir string, max, seg int64) *Spool {
	t.Helper()
	s, err := Open(Config{Dir: dir, MaxBytes: max, SegmentBytes: seg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

// take reads n events, acknowledging each chunk, and returns their ids.
func take(t *testing.T, s *Spool, n, chunk int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		evs, ack, err := s.Next(min(chunk, n-len(ids)))
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			t.Fatalf("spool dry after %d of %d", len(ids), n)
		}
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
		ack()
	}
	return ids
}

func ids(evs []*auditlogin.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

func sameIDs(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d is %s, want %s", i, got[i], want[i])
		}
	}
}

// Events come back in order, byte for byte, across segments; once all are
// acknowledged no segment is left and the size is zero.
func TestOrderAcrossSegmentsAndCleanup(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0, 64<<10) // 64 KiB segments: about 170 events each
	evs := outputtest.Events(1000, "a")
	for i := 0; i < len(evs); i += 100 {
		if err := s.Append(context.Background(), evs[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(segFiles(t, dir)); n < 4 {
		t.Fatalf("%d segments for ~400 KB in 64 KiB segments", n)
	}
	if st := s.Stats(); st.Events != 1000 || st.Bytes < 300_000 || st.Oldest.IsZero() {
		t.Fatalf("stats %+v", st)
	}
	var got []*auditlogin.Event
	for {
		chunk, ack, err := s.Next(64)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk) == 0 {
			break
		}
		got = append(got, chunk...)
		ack()
	}
	sameIDs(t, ids(got), ids(evs))
	for i := range got {
		if string(got[i].Encoded) != string(evs[i].Encoded) || got[i].User != evs[i].User || got[i].Offset != evs[i].Offset {
			t.Fatalf("event %d changed in the spool:\n%s\n%s", i, got[i].Encoded, evs[i].Encoded)
		}
	}
	if st := s.Stats(); st.Events != 0 || st.Bytes != 0 || s.Unread() != 0 {
		t.Fatalf("after every ack: %+v, unread %d", st, s.Unread())
	}
	if f := segFiles(t, dir); len(f) != 0 {
		t.Fatalf("segments left after every ack: %v", f)
	}
}

// The acknowledged position moves over the contiguous prefix only; after a
// restart, what was not acknowledged is read again, from where the prefix
// ended.
func TestRestartResumesAfterTheAcknowledgedPrefix(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0, 0)
	evs := outputtest.Events(100, "b")
	s.Append(context.Background(), evs)
	c1, ack1, _ := s.Next(30)
	c2, ack2, _ := s.Next(30)
	if len(c1) != 30 || len(c2) != 30 {
		t.Fatalf("chunks of %d and %d", len(c1), len(c2))
	}
	ack2() // out of order: the position stays before chunk 1
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, 0, 0)
	if s.Unread() != 100 {
		t.Fatalf("after a restart with only chunk 2 acknowledged: %d unread, want 100", s.Unread())
	}
	c1, ack1, _ = s.Next(30)
	ack1()
	s.Sync()
	s.Close()
	s = open(t, dir, 0, 0)
	sameIDs(t, take(t, s, 70, 25), ids(evs[30:]))
	// New appends after a restart go to a new segment and come after.
	more := outputtest.Events(5, "c")
	s.Append(context.Background(), more)
	sameIDs(t, take(t, s, 5, 10), ids(more))
	_ = c1
}

// Segments of a run are numbered after the acknowledged one even when every
// file was deleted: an older number would be taken as acknowledged (and
// deleted) on the next start.
func TestNumberingSurvivesAnEmptySpool(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0, 0)
	for round := 0; round < 3; round++ {
		s.Append(context.Background(), outputtest.Events(10, "d"))
		take(t, s, 10, 10)
		s.Sync()
		s.Close()
		s = open(t, dir, 0, 0)
	}
	evs := outputtest.Events(10, "e")
	s.Append(context.Background(), evs)
	s.Sync()
	s.Close()
	s = open(t, dir, 0, 0)
	if s.Unread() != 10 {
		t.Fatalf("%d unread after a restart, want 10 (%v)", s.Unread(), segFiles(t, dir))
	}
	sameIDs(t, take(t, s, 10, 10), ids(evs))
}

// A record torn by a crash (the end of a segment) is not read; the records
// before it are.
func TestTornTailIsIgnored(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0, 0)
	evs := outputtest.Events(20, "f")
	s.Append(context.Background(), evs)
	s.Sync()
	s.Close()
	seg := segFiles(t, dir)[0]
	data, _ := os.ReadFile(seg)
	os.WriteFile(seg, append(data, data[:40]...), 0o640) // a partial copy of the first record
	s = open(t, dir, 0, 0)
	if s.Unread() != 20 {
		t.Fatalf("%d unread, want 20", s.Unread())
	}
	sameIDs(t, take(t, s, 20, 7), ids(evs))
	// A bit flipped inside a record ends the segment's valid part there.
	s.Append(context.Background(), evs[:3])
	s.Sync()
	s.Close()
	seg = segFiles(t, dir)[0]
	data, _ = os.ReadFile(seg)
	data[len(data)-10] ^= 0xff // inside the third record
	os.WriteFile(seg, data, 0o640)
	s = open(t, dir, 0, 0)
	if s.Unread() != 2 {
		t.Fatalf("%d unread after a corrupt third record, want 2", s.Unread())
	}
}

// A full spool blocks Append (nothing dropped) until acknowledgements free a
// segment, or its context ends.
func TestFullSpoolBlocksAppend(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 200<<10, 64<<10)
	evs := outputtest.Events(2000, "g")
	i := 0
	for ; i < len(evs); i += 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := s.Append(ctx, evs[i:i+50])
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if i == len(evs) || s.Stats().Bytes > 200<<10 {
		t.Fatalf("appended %d events, %d bytes, with a 200 KiB bound", i, s.Stats().Bytes)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- s.Append(context.Background(), evs[i:i+50]) }()
	select {
	case err := <-blocked:
		t.Fatalf("Append returned %v on a full spool", err)
	case <-time.After(50 * time.Millisecond):
	}
	got := take(t, s, 200, 100) // frees the first segment
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	sameIDs(t, got, ids(evs[:200]))
	rest := take(t, s, i+50-200, 100)
	sameIDs(t, rest, ids(evs[200:i+50]))
}

// A route processor's destination is kept with the spooled event.
func TestRouteIsKept(t *testing.T) {
	s := open(t, t.TempDir(), 0, 0)
	evs := outputtest.Events(3, "r")
	evs[1].Route = auditlogin.Route{Topic: "security", Index: "security-%{+yyyy.MM}"}
	s.Append(context.Background(), evs)
	got, ack, err := s.Next(10)
	if err != nil || len(got) != 3 {
		t.Fatalf("%d %v", len(got), err)
	}
	ack()
	if got[0].Route != (auditlogin.Route{}) || got[1].Route != evs[1].Route || string(got[1].Encoded) != string(evs[1].Encoded) {
		t.Fatalf("routes %+v %+v", got[0].Route, got[1].Route)
	}
}
