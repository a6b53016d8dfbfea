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
// Each generation is an open-addressing table with linear probing over a
// slice of keys, the times in a slice beside it, and a byte per slot in a
// third (tags): 0 for an empty slot, else eight bits of the key. A probe
// reads the tags and looks at a key only where its tag matches: the tags of
// both generations (128 KiB at the default bound) stay in the core's cache
// where the keys (1 MiB) do not, so a key the set does not hold (most of
// them on a fleet with many sources) costs no trip to memory, and a table
// is emptied by clearing its tags. No pointers: the garbage collector never
// scans them.
type seenSet struct {
	cur, old *seenTable
	limit    int  // entries a generation holds
	keepOld  bool // false with max 1: the bound leaves no room for a second generation
	dup      int  // keys in both generations
}

type seenTable struct {
	tags  []uint8  // len is a power of two; 0 marks an empty slot, else tagOf(keys[i])
	keys  []uint64 // valid where tags[i] != 0
	lasts []uint32 // the time of keys[i], unix seconds (to 2106: see stamp)
	n     int
	shift uint // 64 - log2(len(keys))
}

// tagOf is the tag of a key: its low eight bits (the slot comes from its
// high bits), never 0.
func tagOf(key uint64) uint8 {
	if t := uint8(key); t != 0 {
		return t
	}
	return 1
}

// newSeenSet returns a set that holds at most max entries (at least 1).
func newSeenSet(bound int) *seenSet {
	limit := max(1, bound/2)
	return &seenSet{cur: newSeenTable(limit), old: newSeenTable(limit), limit: limit, keepOld: bound >= 2}
}

// newSeenTable returns a table for n entries at a load of at most four
// fifths (linear probing stays short there; two generations of 50,000
// entries take 1.6 MiB: 8 bytes a key, 4 its time, 1 its tag).
func newSeenTable(n int) *seenTable {
	size, bits := 8, uint(3)
	for size*4/5 < n+1 {
		size, bits = size*2, bits+1
	}
	return &seenTable{tags: make([]uint8, size), keys: make([]uint64, size), lasts: make([]uint32, size), shift: 64 - bits}
}

// stamp is t (unix seconds) as a table keeps it: 32 bits hold every second
// from 1970 to 2106, and a quarter of the set's memory is saved (the times
// only order entries for the turnover at load).
func stamp(t int64) uint32 { return uint32(min(max(t, 0), 1<<32-1)) }

// find returns the slot holding key (found) or the empty slot where it
// would go. Fibonacci hashing picks the first slot: keys whose low bits
// are alike (and so their tags) spread.
func (t *seenTable) find(key uint64) (i int, found bool) {
	mask := len(t.tags) - 1
	tag := tagOf(key)
	for i = int((key * 0x9E3779B97F4A7C15) >> t.shift); ; i = (i + 1) & mask {
		switch t.tags[i] {
		case 0:
			return i, false
		case tag:
			if t.keys[i] == key {
				return i, true
			}
		}
	}
}

func (t *seenTable) put(i int, key uint64, last int64) {
	t.tags[i], t.keys[i], t.lasts[i] = tagOf(key), key, stamp(last)
	t.n++
}

func (t *seenTable) reset() {
	clear(t.tags)
	t.n = 0
}

// swap stores last for key and returns the time it had (ok false: new).
func (s *seenSet) swap(key uint64, last int64) (prev int64, ok bool) {
	cur := s.cur
	i, found := cur.find(key)
	if found {
		prev, cur.lasts[i] = int64(cur.lasts[i]), stamp(last)
		return prev, true
	}
	if o, found := s.old.find(key); found {
		prev, ok = int64(s.old.lasts[o]), true
	}
	if cur.n >= s.limit {
		s.turnOver() // old, where key may have been, is gone
		cur = s.cur
		i, _ = cur.find(key)
	} else if ok {
		s.dup++ // in both now
	}
	cur.put(i, key, last)
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
	for i, tag := range s.cur.tags {
		if tag != 0 {
			fn(s.cur.keys[i], int64(s.cur.lasts[i]))
		}
	}
	for i, tag := range s.old.tags {
		if tag == 0 {
			continue
		}
		k := s.old.keys[i]
		if _, in := s.cur.find(k); !in {
			fn(k, int64(s.old.lasts[i]))
		}
	}
}
