package auditlogin

import (
	"testing"
	"time"
)

// clock is the simulated time writes complete at.
var clock = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

// rounds runs n rounds of writes of 512 events at the limit (every slot
// busy), each write taking rtt(limit), limit of them completing per round
// trip; it returns how many rounds were above the floor.
func rounds(c *concurrency, n int, rtt func(limit int) time.Duration) (above int) {
	for range n {
		if c.limit > c.floor {
			above++
		}
		l := c.limit
		for range 4 * l {
			r := rtt(l)
			clock = clock.Add(r / time.Duration(l))
			c.sent(l)
			c.done(clock, r, 512, false)
		}
	}
	return above
}

func flat(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }

// A broker 20 ms away answers as fast with more in flight: the limit
// doubles to the ceiling once the path's round trip is known.
func TestConcurrencyGrowsTowardADistantBroker(t *testing.T) {
	c := newConcurrency(4, 512, true)
	rounds(c, floorRounds/2-1, flat(20*time.Millisecond))
	if c.limit != 4 {
		t.Fatalf("limit %d before the path's round trip is known", c.limit)
	}
	rounds(c, 3, flat(20*time.Millisecond))
	if c.limit != 16 {
		t.Fatalf("limit %d toward a broker 20 ms away, want the ceiling 16", c.limit)
	}
	// It stays there while the round trip does.
	if rounds(c, 50, flat(21*time.Millisecond)); c.limit != 16 {
		t.Fatalf("limit %d", c.limit)
	}
	// A failed write (or refused items) sets it back to the floor.
	if !c.done(clock, 20*time.Millisecond, 512, true) || c.limit != 4 {
		t.Fatalf("limit %d after a failure", c.limit)
	}
}

// A broker on this host (2 ms for 4 writes of 512): the floor already
// carries a million events a second; the limit and the memory stay.
func TestConcurrencyStaysNearBy(t *testing.T) {
	c := newConcurrency(4, 512, true)
	if above := rounds(c, 500, flat(2*time.Millisecond)); above != 0 || c.limit != 4 {
		t.Fatalf("limit %d, %d rounds above the floor", c.limit, above)
	}
	// Bursts of slow answers (a broker collecting its garbage) are not
	// the path: the least round of the last ones is.
	i := 0
	bursty := func(int) time.Duration {
		i++
		if i%50 < 5 {
			return 80 * time.Millisecond
		}
		return 2 * time.Millisecond
	}
	if above := rounds(c, 500, bursty); above != 0 {
		t.Fatalf("%d rounds above the floor with bursts of slow answers", above)
	}
}

// A broker on this host that is slow to answer while busy (the writes
// queue behind each other and behind its pauses: 12 ms and more at the
// floor, longer than the floor's writes can carry enoughRate over) but
// answers a write that finds it idle in 2 ms: that is the path, near, and
// the limit stays at the floor, with the memory in flight. (Judged by the
// rounds' mean round trips, it doubled here.)
func TestConcurrencyStaysNearByWhileItsWritesQueue(t *testing.T) {
	c := newConcurrency(4, 512, true)
	i := 0
	busy := func(limit int) time.Duration {
		i++
		if i%(4*limit) == 0 {
			return 2 * time.Millisecond
		}
		return time.Duration(limit) * 3 * time.Millisecond
	}
	if above := rounds(c, 400, busy); above != 0 || c.limit != 4 {
		t.Fatalf("limit %d, %d of 400 rounds above the floor toward a near broker that queues", c.limit, above)
	}
	// The same broker 20 ms away: no write is quicker than the path.
	far := func(limit int) time.Duration { return 20*time.Millisecond + busy(limit) }
	rounds(c, floorRounds, far)
	if c.limit == 4 {
		t.Fatalf("limit %d toward the same broker 20 ms away", c.limit)
	}
}

// A distant broker that queues what it is sent (its round trip grows with
// the requests in flight) gets a try now and then, rarer each time.
func TestConcurrencyBacksOffFromADistantBrokerThatQueues(t *testing.T) {
	c := newConcurrency(4, 512, true)
	above := rounds(c, 400, func(limit int) time.Duration { return time.Duration(limit) * 6 * time.Millisecond })
	if c.limit != 4 || above > 20 {
		t.Fatalf("limit %d, %d of 400 rounds above the floor", c.limit, above)
	}
}

func TestConcurrencyIdleAndFixed(t *testing.T) {
	c := newConcurrency(4, 512, true)
	// Writes that never fill the limit (little to send) do not raise it.
	for range 1000 {
		clock = clock.Add(20 * time.Millisecond)
		c.sent(1)
		c.done(clock, 20*time.Millisecond, 512, false)
	}
	if c.limit != 4 {
		t.Fatalf("limit %d after rounds that never used it", c.limit)
	}
	// Not adaptive, or one worker: fixed.
	for _, f := range []*concurrency{newConcurrency(4, 512, false), newConcurrency(1, 512, true)} {
		rounds(f, 100, flat(20*time.Millisecond))
		if f.limit != f.floor || f.ceil != f.floor {
			t.Fatalf("fixed concurrency moved: %+v", f)
		}
	}
}

// A distant broker that takes 8 requests at once without queueing, but not
// 16 (or an agent whose one core sends no more): the limit settles at 8,
// trying 16 again now and then.
func TestConcurrencySettlesBelowWhereItQueues(t *testing.T) {
	c := newConcurrency(4, 512, true)
	rtt := func(limit int) time.Duration {
		if limit > 8 {
			return 45 * time.Millisecond
		}
		return 20 * time.Millisecond
	}
	rounds(c, 20, rtt)
	at := map[int]int{}
	for range 400 {
		at[c.limit]++
		rounds(c, 1, rtt)
	}
	if at[8] < 300 || at[16] > 40 {
		t.Fatalf("rounds at each limit: %v; want mostly 8", at)
	}
}
