package enrich

import (
	"maps"
	"math/rand/v2"
	"testing"
)

// genModel is the seen-set's rule with Go maps: two generations of at most
// limit keys each.
type genModel struct {
	cur, old map[uint64]int64
	limit    int
}

func (m *genModel) swap(key uint64, last int64) bool {
	if _, ok := m.cur[key]; ok {
		m.cur[key] = last
		return true
	}
	_, ok := m.old[key]
	if len(m.cur) >= m.limit {
		m.old, m.cur = m.cur, map[uint64]int64{}
	}
	m.cur[key] = last
	return ok
}

func (m *genModel) entries() map[uint64]int64 {
	out := map[uint64]int64{}
	for k, v := range m.old {
		out[k] = v
	}
	for k, v := range m.cur {
		out[k] = v
	}
	return out
}

// The table agrees with the rule written with Go maps through inserts,
// updates and turnovers, with keys chosen to collide in their home slot and
// the key 0.
func TestSeenSetMatchesAMap(t *testing.T) {
	const max = 1000
	s := newSeenSet(max)
	ref := &genModel{cur: map[uint64]int64{}, old: map[uint64]int64{}, limit: max / 2}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		var key uint64
		switch rng.IntN(4) {
		case 0:
			key = rng.Uint64N(1500) // many repeats, some from the previous generation
		case 1:
			key = rng.Uint64N(50) << 58 // same low bits: one home under a weak hash
		default:
			key = rng.Uint64()
		}
		if key == 0 {
			key = 1 // as stored
		}
		_, ok := s.swap(key, int64(i))
		if want := ref.swap(key, int64(i)); ok != want {
			t.Fatalf("step %d: key %x seen=%v, the model says %v", i, key, ok, want)
		}
		want := ref.entries()
		if s.len() != len(want) || s.len() > max {
			t.Fatalf("step %d: %d entries, the model has %d (bound %d)", i, s.len(), len(want), max)
		}
		if i%997 == 0 {
			n := 0
			s.each(func(k uint64, v int64) {
				n++
				if want[k] != v {
					t.Fatalf("step %d: key %x: last %d, the model says %d", i, k, v, want[k])
				}
			})
			if n != len(want) {
				t.Fatalf("step %d: each gave %d entries, want %d", i, n, len(want))
			}
		}
	}
	if load := float64(s.limit) / float64(len(s.cur.keys)); load > 0.8 {
		t.Fatalf("%d slots for %d entries: load %.2f", len(s.cur.keys), s.limit, load)
	}
}

// What is dropped is what was least recently seen: a key seen again within
// the last max/2 distinct keys is always kept, and the set holds at least
// max/2 and at most max entries once full.
func TestSeenSetKeepsTheRecentlySeen(t *testing.T) {
	for _, bound := range []int{1, 2, 3, 10, 101} {
		s := newSeenSet(bound)
		var order []uint64 // distinct keys, most recently seen last
		rng := rand.New(rand.NewPCG(3, uint64(bound)))
		for i := range 5000 {
			key := rng.Uint64N(uint64(3*bound)) + 1
			_, ok := s.swap(key, int64(i))
			for j, k := range order {
				if k == key {
					if len(order)-j <= max(1, bound/2) && !ok {
						t.Fatalf("bound %d step %d: key %d, seen %d keys ago, was dropped", bound, i, key, len(order)-j)
					}
					order = append(order[:j], order[j+1:]...)
					break
				}
			}
			order = append(order, key)
			if n := s.len(); n > bound {
				t.Fatalf("bound %d step %d: %d entries", bound, i, n)
			}
			if i > 10*bound && s.len() < max(1, bound/2) {
				t.Fatalf("bound %d step %d: %d entries, fewer than half the bound", bound, i, s.len())
			}
		}
	}
}

// Times are kept to the second from 1970 to 2106, clamped outside.
func TestSeenSetKeepsTimes(t *testing.T) {
	s := newSeenSet(10)
	want := map[uint64]int64{1: 0, 2: 1_764_000_000, 3: 1<<32 - 1, 4: 0, 5: 1<<32 - 1}
	for k, v := range map[uint64]int64{1: 0, 2: 1_764_000_000, 3: 1<<32 - 1, 4: -5, 5: 1 << 40} {
		s.swap(k, v)
	}
	if prev, ok := s.swap(2, 1_764_000_001); !ok || prev != 1_764_000_000 {
		t.Errorf("swap of a known key gave %d, %v; want its time 1764000000", prev, ok)
	}
	want[2] = 1_764_000_001
	got := map[uint64]int64{}
	s.each(func(k uint64, v int64) { got[k] = v })
	if !maps.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}
