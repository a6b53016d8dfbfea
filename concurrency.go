package auditlogin

import "time"

// concurrency is an output's adaptive limit on writes in flight, between
// the output's configured workers (the floor) and four times that: more
// requests at once toward a destination far away, as Vector's adaptive
// request concurrency does, reduced to what a login shipper needs.
//
// Writes are counted in rounds (four times the limit's worth). At the
// floor, a round's quickest write is noted; the least of the last rounds
// there is the path's round trip when nothing queues (a write that found
// the destination idle: the mean of a round also holds the time each write
// waited behind the others at a busy broker, which more writes in flight
// only lengthen). When that round trip is long enough that the floor's
// writes cannot carry enoughRate events a second (a broker 20 ms away:
// 2048 events per 20 ms, about 100,000 a second), and the round kept every
// write slot busy, the limit doubles. A round at the doubled limit that
// delivered at least a fifth more events a second than the round before
// the doubling keeps it (and the limit may double again, to the ceiling);
// one that did not means the requests only queue (at the destination, or
// in this agent's own core): the limit halves back, and does not double
// past that for 8 rounds, then 16, up to 64. A failed write, or one with
// items refused, sets it back to the floor. A broker on this host answers
// a write that finds it idle in a few milliseconds, however long writes
// queue behind its pauses: the limit stays at the floor, and so does the
// memory in flight. Used by the output's loop only (no lock).
type concurrency struct {
	floor, ceil, limit int
	perWrite           int // events a write carries at most

	floorLeast [floorRounds]time.Duration // the last rounds' quickest writes at the floor (0: none)
	next       int

	// the round in progress
	start     time.Time
	n, events int
	least     time.Duration // its quickest write
	saturated bool          // a write went out at the limit

	before        float64 // events a second in the last round before the limit doubled (0: not doubled)
	top           int     // the most the limit doubles to now: the ceiling, or less for hold rounds
	hold, backoff int     // rounds before top is the ceiling again, and the last such wait
}

// floorRounds is how many rounds at the floor the path's round trip is the
// least of (a burst of slow answers does not count as the path, nor does
// a destination that was slow for a while stay judged by it).
const floorRounds = 8

// enoughRate is the rate, in events a second, above which more writes in
// flight are not worth their memory: about what the agent parses and
// ships on one core.
const enoughRate = 500_000

func newConcurrency(workers, perWrite int, adaptive bool) *concurrency {
	c := &concurrency{floor: workers, ceil: workers, limit: workers, perWrite: perWrite}
	if adaptive && workers > 1 {
		c.ceil = 4 * workers
	}
	c.top = c.ceil
	return c
}

// sent notes a write going out with inFlight writes now out.
func (c *concurrency) sent(inFlight int) {
	if inFlight >= c.limit {
		c.saturated = true
	}
}

// path is the round trip of the path when nothing queues, and whether
// enough rounds at the floor were seen to tell.
func (c *concurrency) path() (time.Duration, bool) {
	var least time.Duration
	seen := 0
	for _, m := range c.floorLeast {
		if m > 0 {
			seen++
			if least == 0 || m < least {
				least = m
			}
		}
	}
	return least, seen >= floorRounds/2
}

// done notes a write completed at now: its round trip, the events it
// delivered, and whether it failed or had items refused. It reports
// whether the limit changed.
func (c *concurrency) done(now time.Time, took time.Duration, events int, failed bool) bool {
	if c.ceil == c.floor {
		return false
	}
	old := c.limit
	if failed {
		c.limit, c.before = c.floor, 0
		c.n, c.events, c.least, c.saturated, c.start = 0, 0, 0, false, now
		return c.limit != old
	}
	if c.n == 0 && c.start.IsZero() {
		c.start = now.Add(-took) // the first round starts with its first write
	}
	c.n++
	c.events += events
	if c.least == 0 || took < c.least {
		c.least = max(took, time.Nanosecond)
	}
	if c.n < 4*c.limit {
		return false
	}
	least := c.least
	rate := float64(c.events) / max(now.Sub(c.start), time.Microsecond).Seconds()
	saturated := c.saturated
	c.n, c.events, c.least, c.saturated, c.start = 0, 0, 0, false, now
	if c.limit == c.floor {
		c.floorLeast[c.next] = least
		c.next = (c.next + 1) % floorRounds
	}
	if c.hold > 0 {
		if c.hold--; c.hold == 0 {
			c.top = c.ceil
		}
	}
	path, known := c.path()
	switch {
	case !saturated:
		// Too little to send to tell anything.
	case c.before > 0 && rate*5 < c.before*6:
		// Doubled for nothing: the requests only queued.
		c.limit = max(c.floor, c.limit/2)
		c.top, c.before = c.limit, 0
		c.backoff = min(max(2*c.backoff, floorRounds), 8*floorRounds)
		c.hold = c.backoff
	case c.limit >= c.top:
		c.before = 0
	case c.limit > c.floor || (known && time.Duration(c.floor*c.perWrite)*time.Second < enoughRate*path):
		// Above the floor and paying off, or at the floor of a distant
		// destination: double.
		c.limit = min(c.top, 2*c.limit)
		c.before = rate
	}
	return c.limit != old
}
