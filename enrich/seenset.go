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
// slice of keys, the times in a slice beside it: no pointers (the garbage
// collector never scans them), and a lookup reads one or two cache lines of
// keys only (8 bytes a slot: the keys of both generations, 1 MiB, stay in
// cache better than key/time pairs did).
type seenSet struct {
	cur, old *seenTable
	limit    int  // entries a generation holds
	keepOld  bool // false with max 1: the bound leaves no room for a second generation
	dup      int  // keys in both generations
}

type seenTable struct {
	keys  []uint64 // len is a power of two; 0 marks an empty slot (a key of 0 is stored as 1)
	lasts []uint32 // the time of keys[i], unix seconds (to 2106: see stamp)
	n     int
	shift uint // 64 - log2(len(keys))
}

// newSeenSet returns a set that holds at most max entries (at least 1).
func newSeenSet(bound int) *seenSet {
	limit := max(1, bound/2)
	return &seenSet{cur: newSeenTable(limit), old: newSeenTable(limit), limit: limit, keepOld: bound >= 2}
}

// newSeenTable returns a table for n entries at a load of at most four
// fifths (linear probing stays short there; two generations of 50,000
// entries take 1.5 MiB: 8 bytes a key, 4 its time).
func newSeenTable(n int) *seenTable {
	size, bits := 8, uint(3)
	for size*4/5 < n+1 {
		size, bits = size*2, bits+1
	}
	return &seenTable{keys: make([]uint64, size), lasts: make([]uint32, size), shift: 64 - bits}
}

// stamp is t (unix seconds) as a table keeps it: 32 bits hold every second
// from 1970 to 2106, and a quarter of the set's memory is saved (the times
// only order entries for the turnover at load).
func stamp(t int64) uint32 { return uint32(min(max(t, 0), 1<<32-1)) }

// find returns the slot holding key, or the empty slot where it would go.
// Fibonacci hashing picks the first slot: keys whose low bits are alike
// spread.
func (t *seenTable) find(key uint64) int {
	mask := len(t.keys) - 1
	for i := int((key * 0x9E3779B97F4A7C15) >> t.shift); ; i = (i + 1) & mask {
		if k := t.keys[i]; k == key || k == 0 {
			return i
		}
	}
}

func (t *seenTable) reset() {
	clear(t.keys)
	t.n = 0
}

// swap stores last for key and returns the time it had (ok false: new).
func (s *seenSet) swap(key uint64, last int64) (prev int64, ok bool) {
	if key == 0 {
		key = 1
	}
	cur := s.cur
	i := cur.find(key)
	if cur.keys[i] == key {
		prev, cur.lasts[i] = int64(cur.lasts[i]), stamp(last)
		return prev, true
	}
	if o := s.old.find(key); s.old.keys[o] == key {
		prev, ok = int64(s.old.lasts[o]), true
	}
	if cur.n >= s.limit {
		s.turnOver() // old, where key may have been, is gone
		cur = s.cur
		i = cur.find(key)
	} else if ok {
		s.dup++ // in both now
	}
	cur.keys[i], cur.lasts[i] = key, stamp(last)
	cur.n++
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
	for i, k := range s.cur.keys {
		if k != 0 {
			fn(k, int64(s.cur.lasts[i]))
		}
	}
	for i, k := range s.old.keys {
		if k != 0 && s.cur.keys[s.cur.find(k)] != k {
			fn(k, int64(s.old.lasts[i]))
		}
	}
}
