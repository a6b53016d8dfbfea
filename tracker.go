package auditlogin

import (
	"context"
	"sync"
	"time"
)

// tracker knows, per file, which records are in flight and the highest
// offset below which every record has been acknowledged. Offsets move only
// over a contiguous acknowledged prefix: an unfinished batch leaves a gap that
// no later acknowledgement can jump (the mistake promtail and telegraf's tail
// make by saving the read offset).
//
// It also bounds what is in flight, in records and in bytes: Track blocks
// while max records or maxBytes are unacked, which is how a stalled output
// stops the tailer from reading, keeping memory bounded while the log file
// itself is the buffer. One record is always let in when nothing is in
// flight, however large, so that a record above maxBytes cannot wedge it.
type tracker struct {
	mu       sync.Mutex
	cond     *sync.Cond
	files    map[FileID]*fileTrack
	inFlight int
	bytes    int64
	max      int
	maxBytes int64
	waiting  int           // Track calls blocked now (tests wait for it)
	blocked  time.Duration // how long Track calls have waited, in all
	// waitStart is when the Track call waiting now began (Track is
	// called from one goroutine, the pipeline's parse stage).
	waitStart time.Time

	// The file of the last add: records come in runs from one file, and
	// the map's key holds a 64-digit fingerprint to hash.
	lastID FileID
	last   *fileTrack
}

type fileTrack struct {
	path      string
	committed int64
	started   bool
	dirty     bool
	base      uint64 // sequence number of the oldest span in flight
	// The spans in flight, oldest first: n of them from ring[head], a ring
	// whose length is a power of two (a slice resliced from its front as
	// spans were acknowledged reallocated all the time: 50 bytes an event).
	ring    []span
	head, n int
}

// span returns the i-th span in flight.
func (f *fileTrack) span(i int) *span { return &f.ring[(f.head+i)&(len(f.ring)-1)] }

// push adds a span after the others, growing the ring when it is full.
func (f *fileTrack) push(sp span) {
	if f.n == len(f.ring) {
		ring := make([]span, max(64, 2*len(f.ring)))
		for i := 0; i < f.n; i++ {
			ring[i] = *f.span(i)
		}
		f.ring, f.head = ring, 0
	}
	*f.span(f.n) = sp
	f.n++
}

// maxKeptRing is the longest ring kept when nothing is in flight.
const maxKeptRing = 4096

type span struct {
	end   int64
	size  int32
	acked bool
}

// ticket identifies a tracked record for ack.
type ticket struct {
	f   *fileTrack
	seq uint64
}

// newTracker bounds what is in flight to max records and maxBytes bytes
// (maxBytes <= 0: no byte bound).
func newTracker(max int, maxBytes int64) *tracker {
	if maxBytes <= 0 {
		maxBytes = noByteBound
	}
	t := &tracker{files: map[FileID]*fileTrack{}, max: max, maxBytes: maxBytes}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// setMax changes the bound on records in flight; Track calls waiting for
// room see a larger one at once.
func (t *tracker) setMax(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n > t.max {
		t.cond.Broadcast()
	}
	t.max = n
}

// noByteBound is maxBytes when there is no byte bound.
const noByteBound = 1 << 62

// full reports whether Track would block now.
func (t *tracker) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.isFull()
}

func (t *tracker) isFull() bool {
	return t.inFlight > 0 && (t.inFlight >= t.max || t.bytes >= t.maxBytes)
}

// Track registers a record of size bytes in flight, blocking while too many
// records or bytes are. It returns false only when ctx is done.
func (t *tracker) Track(ctx context.Context, pos Position, size int) (ticket, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isFull() {
		start := time.Now()
		t.waitStart = start
		defer func() { t.blocked += time.Since(start) }() // under the lock, before the deferred unlock
		for t.isFull() {
			if ctx.Err() != nil {
				return ticket{}, false
			}
			t.waiting++
			t.cond.Wait()
			t.waiting--
		}
	}
	return t.add(pos, size), true
}

// TryTrack is Track that never blocks: false means the tracker is full.
func (t *tracker) TryTrack(pos Position, size int) (ticket, bool) {
	t.mu.Lock()
	if t.isFull() {
		t.mu.Unlock()
		return ticket{}, false
	}
	tk := t.add(pos, size) // unlocked without a defer: this runs once per event
	t.mu.Unlock()
	return tk, true
}

func (t *tracker) add(pos Position, size int) ticket {
	f := t.last
	if f == nil || pos.File != t.lastID {
		if f = t.files[pos.File]; f == nil {
			f = &fileTrack{}
			t.files[pos.File] = f
		}
		t.lastID, t.last = pos.File, f
	}
	if !f.started || (f.n == 0 && pos.Offset != f.committed) {
		// First record of this file (or the reader skipped ahead, e.g. a
		// start at the end): the committed offset starts where reading did.
		f.committed = pos.Offset
		f.started = true
		f.dirty = true
	}
	f.path = pos.Path
	f.push(span{end: pos.End, size: int32(size)})
	t.inFlight++
	t.bytes += int64(size)
	return ticket{f: f, seq: f.base + uint64(f.n-1)}
}

// Ack marks records delivered and moves committed offsets over the
// contiguous acknowledged prefix of each file.
func (t *tracker) Ack(tks []ticket) {
	t.mu.Lock()
	for _, tk := range tks {
		f := tk.f
		sp := f.span(int(tk.seq - f.base))
		sp.acked = true
		t.bytes -= int64(sp.size)
		n := 0
		for n < f.n && f.span(n).acked {
			n++
		}
		if n > 0 {
			f.committed = f.span(n - 1).end
			f.dirty = true
			f.head = (f.head + n) & (len(f.ring) - 1)
			f.n -= n
			f.base += uint64(n)
			if f.n == 0 && len(f.ring) > maxKeptRing {
				f.ring, f.head = nil, 0 // let a large ring go
			}
		}
	}
	t.inFlight -= len(tks)
	t.mu.Unlock()
	t.cond.Broadcast()
}

// wake releases Track calls waiting on a cancelled context.
func (t *tracker) wake() { t.cond.Broadcast() }

// Dirty returns the files whose committed offset moved since the last call.
func (t *tracker) Dirty() map[FileID]Committed {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[FileID]Committed{}
	for id, f := range t.files {
		if f.dirty {
			out[id] = Committed{Path: f.path, Offset: f.committed}
			f.dirty = false
		}
		if f.n == 0 && !f.dirty {
			// Nothing in flight and committed is recorded: forget the file;
			// a later record starts it again from its own offset.
			delete(t.files, id)
			if t.last == f {
				t.last = nil
			}
		}
	}
	return out
}

// restore marks offsets dirty again after a failed commit.
func (t *tracker) restore(m map[FileID]Committed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, c := range m {
		f := t.files[id]
		if f == nil {
			f = &fileTrack{path: c.Path, committed: c.Offset, started: true}
			t.files[id] = f
		}
		f.dirty = true
	}
}

// InFlight returns the number of unacknowledged records.
func (t *tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inFlight
}

// load is what is in flight now, the bounds, and how long Track calls have
// waited for room in all (reading held back by the outputs).
type load struct {
	records, maxRecords int
	bytes, maxBytes     int64 // maxBytes 0: no byte bound
	blocked             time.Duration
}

func (t *tracker) load() load {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := load{records: t.inFlight, maxRecords: t.max, bytes: t.bytes, maxBytes: t.maxBytes, blocked: t.blocked}
	if l.maxBytes == noByteBound {
		l.maxBytes = 0
	}
	if t.waiting > 0 {
		// The wait in progress counts too: a stalled output shows at once,
		// not when it recovers.
		l.blocked += time.Since(t.waitStart)
	}
	return l
}

// Waiting returns how many Track calls are blocked now.
func (t *tracker) Waiting() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waiting
}
