package enrich

import (
	"math/rand/v2"
	"testing"
)

// The table agrees with a Go map through inserts, updates and trims, with
// keys chosen to collide in their home slot and the key 0.
func TestSeenSetMatchesAMap(t *testing.T) {
	const max = 1000
	s := newSeenSet(max)
	ref := map[uint64]int64{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		var key uint64
		switch rng.IntN(4) {
		case 0:
			key = rng.Uint64N(3000) // many repeats
		case 1:
			key = rng.Uint64N(50) << 58 // same low bits: one home under a weak hash
		default:
			key = rng.Uint64()
		}
		if key == 0 {
			key = 1 // as stored
		}
		_, ok := s.swap(key, int64(i))
		if _, want := ref[key]; ok != want {
			t.Fatalf("step %d: key %x seen=%v, the map says %v", i, key, ok, want)
		}
		ref[key] = int64(i)
		if s.len() > max {
			cutoff := int64(i - 700)
			s.trim(cutoff, max)
			for k, v := range ref {
				if v < cutoff {
					delete(ref, k)
				}
			}
		}
		if s.len() != len(ref) {
			t.Fatalf("step %d: %d entries, the map has %d", i, s.len(), len(ref))
		}
	}
	n := 0
	s.each(func(k uint64, v int64) {
		n++
		if ref[k] != v {
			t.Fatalf("key %x: last %d, the map says %d", k, v, ref[k])
		}
	})
	if n != len(ref) {
		t.Fatalf("each gave %d entries, want %d", n, len(ref))
	}
	if load := float64(max) / float64(len(s.slots)); load > 0.8 {
		t.Fatalf("%d slots for %d entries: load %.2f", len(s.slots), max, load)
	}
}

// Entries that share one time are trimmed down to keep all the same (a
// burst of new sources within a second): otherwise nothing would go, and
// every new source would trim again.
func TestSeenSetTrimsEqualTimes(t *testing.T) {
	s := newSeenSet(100)
	for k := uint64(1); k <= 100; k++ {
		s.swap(k*0x1000, 7)
	}
	s.swap(5, 3)
	s.trim(7, 80)
	if s.len() != 80 {
		t.Fatalf("%d entries after trimming to 80", s.len())
	}
	if _, ok := s.swap(5, 9); ok {
		t.Fatal("the entry below the cutoff was kept")
	}
	n := 0
	s.each(func(k uint64, v int64) {
		if v == 7 {
			if _, ok := s.swap(k, 7); !ok {
				t.Fatalf("key %x listed but not found", k)
			}
			n++
		}
	})
	if n != 80 {
		t.Fatalf("%d entries at the cutoff kept, want 80", n)
	}
}
