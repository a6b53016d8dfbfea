package enrich

// seenSet maps 64-bit keys to a last-seen time (unix seconds): an open-
// addressing table with linear probing in one slice of key/time pairs. It
// holds no pointers (the garbage collector never scans it) and a lookup
// reads one or two cache lines, where a Go map of 100,000 entries, with
// the tombstones that trimming leaves, made the seen-set the agent's
// largest single cost (10 % of the pipeline's CPU in BenchmarkPipeline).
type seenSet struct {
	slots []seenSlot // len is a power of two; key 0 marks an empty slot
	n     int
	shift uint // 64 - log2(len(slots))
}

type seenSlot struct {
	key  uint64 // 0: empty (a key of 0 is stored as 1)
	last int64
}

// newSeenSet returns a set that holds max entries at a load of at most
// four fifths (linear probing stays short there; 100,000 entries take
// 2 MiB).
func newSeenSet(max int) *seenSet {
	size, bits := 8, uint(3)
	for size*4/5 < max+1 {
		size, bits = size*2, bits+1
	}
	return &seenSet{slots: make([]seenSlot, size), shift: 64 - bits}
}

// home is key's first slot: Fibonacci hashing spreads keys whose low bits
// are alike.
func (s *seenSet) home(key uint64) int { return int((key * 0x9E3779B97F4A7C15) >> s.shift) }

// swap stores last for key and returns the time it had (ok false: new).
func (s *seenSet) swap(key uint64, last int64) (prev int64, ok bool) {
	if key == 0 {
		key = 1
	}
	mask := len(s.slots) - 1
	for i := s.home(key); ; i = (i + 1) & mask {
		sl := &s.slots[i]
		switch sl.key {
		case key:
			prev, sl.last = sl.last, last
			return prev, true
		case 0:
			sl.key, sl.last = key, last
			s.n++
			return 0, false
		}
	}
}

// len is the number of entries.
func (s *seenSet) len() int { return s.n }

// each calls fn for every entry, in no order.
func (s *seenSet) each(fn func(key uint64, last int64)) {
	for _, sl := range s.slots {
		if sl.key != 0 {
			fn(sl.key, sl.last)
		}
	}
}

// trim drops the entries last seen before cutoff, and of those seen at
// cutoff as many as it takes to leave at most keep (which ones is
// arbitrary: times are seconds, and a burst of new sources can share one).
// It works in place: emptied slots would break the probe runs of entries
// after them, so every remaining entry is then stored again from its home
// slot, in slot order from an empty slot on (the standard rehash in place
// of linear probing: each lands at or before where it was).
func (s *seenSet) trim(cutoff int64, keep int) {
	below := 0
	for _, sl := range s.slots {
		if sl.key != 0 && sl.last < cutoff {
			below++
		}
	}
	atCutoff := max(s.n-below-keep, 0) // entries at cutoff to drop too
	for i, sl := range s.slots {
		if sl.key == 0 {
			continue
		}
		if sl.last < cutoff || (sl.last == cutoff && atCutoff > 0) {
			if sl.last == cutoff {
				atCutoff--
			}
			s.slots[i] = seenSlot{}
			s.n--
		}
	}
	mask := len(s.slots) - 1
	start := 0
	for s.slots[start].key != 0 {
		start++ // there is an empty slot: the load is below one
	}
	for k := 1; k <= len(s.slots); k++ {
		i := (start + k) & mask
		sl := s.slots[i]
		if sl.key == 0 {
			continue
		}
		s.slots[i] = seenSlot{}
		s.n--
		s.swap(sl.key, sl.last)
	}
}
