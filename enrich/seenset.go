package enrich

// seenSet maps 64-bit keys to a last-seen time (unix seconds), bounded to
// max entries, in two generations. A key is looked up in the current
// generation, then in the previous one (found there, it is copied into the
// current one). When the current generation is full (max/2 entries) and a
// key must go in, the previous generation is dropped and the current one
// becomes the previous: what goes is every entry not seen during the whole
// current generation, the least recently seen ones. The set then holds
// between max/2 and max entries, at a constant cost per new key: no scan,
// selection or rehash of the whole table (trimming 100,000 entries to 80 %
// every 20,000 new sources took half of enrichment's CPU on bench/gen's
// mix, and a 800 KB scratch slice each time).
//
// Each generation is an open-addressing table with linear probing in one
// slice of key/time pairs: no pointers (the garbage collector never scans
// it), and a lookup reads one or two cache lines.
type seenSet struct {
	cur, old *seenTable
	limit    int  // entries a generation holds
	keepOld  bool // false with max 1: the bound leaves no room for a second generation
	dup      int  // keys in both generations
}

type seenTable struct {
	slots []seenSlot // len is a power of two; key 0 marks an empty slot
	n     int
	shift uint // 64 - log2(len(slots))
}

type seenSlot struct {
	key  uint64 // 0: empty (a key of 0 is stored as 1)
	last int64
}

// newSeenSet returns a set that holds at most max entries (at least 1).
func newSeenSet(bound int) *seenSet {
	limit := max(1, bound/2)
	return &seenSet{cur: newSeenTable(limit), old: newSeenTable(limit), limit: limit, keepOld: bound >= 2}
}

// newSeenTable returns a table for n entries at a load of at most four
// fifths (linear probing stays short there; two generations of 50,000
// entries take 2 MiB).
func newSeenTable(n int) *seenTable {
	size, bits := 8, uint(3)
	for size*4/5 < n+1 {
		size, bits = size*2, bits+1
	}
	return &seenTable{slots: make([]seenSlot, size), shift: 64 - bits}
}

// find returns the slot holding key, or the empty slot where it would go.
// Fibonacci hashing picks the first slot: keys whose low bits are alike
// spread.
func (t *seenTable) find(key uint64) *seenSlot {
	mask := len(t.slots) - 1
	for i := int((key * 0x9E3779B97F4A7C15) >> t.shift); ; i = (i + 1) & mask {
		if sl := &t.slots[i]; sl.key == key || sl.key == 0 {
			return sl
		}
	}
}

func (t *seenTable) reset() {
	clear(t.slots)
	t.n = 0
}

// swap stores last for key and returns the time it had (ok false: new).
func (s *seenSet) swap(key uint64, last int64) (prev int64, ok bool) {
	if key == 0 {
		key = 1
	}
	sl := s.cur.find(key)
	if sl.key == key {
		prev, sl.last = sl.last, last
		return prev, true
	}
	if o := s.old.find(key); o.key == key {
		prev, ok = o.last, true
	}
	if s.cur.n >= s.limit {
		s.turnOver() // old, where key may have been, is gone
		sl = s.cur.find(key)
	} else if ok {
		s.dup++ // in both now
	}
	sl.key, sl.last = key, last
	s.cur.n++
	return prev, ok
}

// turnOver drops the previous generation; the current one takes its place.
func (s *seenSet) turnOver() {
	if s.keepOld {
		s.cur, s.old = s.old, s.cur
	}
	s.cur.reset()
	s.dup = 0
}

// len is the number of entries (keys in both generations count once).
func (s *seenSet) len() int { return s.cur.n + s.old.n - s.dup }

// each calls fn for every entry, in no order.
func (s *seenSet) each(fn func(key uint64, last int64)) {
	for _, sl := range s.cur.slots {
		if sl.key != 0 {
			fn(sl.key, sl.last)
		}
	}
	for _, sl := range s.old.slots {
		if sl.key != 0 && s.cur.find(sl.key).key != sl.key {
			fn(sl.key, sl.last)
		}
	}
}
