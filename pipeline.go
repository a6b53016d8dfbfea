package auditlogin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// PipelineConfig configures a Pipeline. Zero durations and sizes take the
// defaults noted on each field.
type PipelineConfig struct {
	Outputs    []Output   // at least one
	Checkpoint Checkpoint // where committed offsets go; nil commits nothing
	DeadLetter DeadLetter // rejected records; nil only logs and counts them
	Logger     *slog.Logger

	// OnBatch, when set, is called after each output has delivered (or
	// dead-lettered) a batch, with the time that took, retries included.
	OnBatch func(output string, took time.Duration, events int)

	// OnInFlightBound, when set, is called with the in-flight bound (in
	// events) each time Adaptive changes it, before reading may use the
	// new room (a memory limit derived from it follows it up and down).
	OnInFlightBound func(events int)

	// Enrich, when set, is called for each event after parsing and
	// Normalize (id, canonical ip), before the event is encoded.
	Enrich func(*Event)
	// Tick, when set, is called every FlushInterval, idle or not, from the
	// goroutine that calls Enrich (never at the same time): what Enrich
	// keeps can be looked at there without a lock.
	Tick func()

	// Keep, when set, is called after Enrich: false drops the event (a
	// drop_event processor): it is acknowledged, not shipped, and counted
	// in Stats.Dropped.
	Keep func(*Event) bool
	// Schema is the shape every output ships events in (event_schema:).
	Schema Schema

	// Recycle, when set, is called with each slice of lines Run received
	// once every line in it has been fed to its parser (parsers copy what
	// they keep): the reader may then reuse the slice and the lines' Data.
	Recycle func([]Line)

	// Spools, when set, gives an output (by its Name) an on-disk buffer:
	// when it falls behind the other outputs, or is down, what it cannot
	// take goes there instead of holding reading back (see Spool).
	Spools map[string]Spool

	BatchSize     int           // events per batch (default 1024)
	FlushInterval time.Duration // a partial batch waits at most this long (default 200ms)
	MaxInFlight   int           // unacknowledged records before reading blocks (default 4*BatchSize, at least 2*BatchSize)
	// Adaptive lets each Concurrent output double its writes in flight,
	// up to four times its Workers, when its round trip is too long for
	// Workers writes to carry enoughRate and each doubling delivers more
	// (a distant destination), and the in-flight bound with them:
	// MaxInFlight grows by BatchSize per write above Workers, to four
	// times MaxInFlight at most; MaxInFlightBytes still holds. See
	// concurrency.
	Adaptive bool
	// MaxInFlightBytes bounds the memory of unacknowledged events: the sum
	// of their sizes as EstimatedSize counts them (default 8 MiB).
	MaxInFlightBytes int64
	// Workers is how many writes each output may have in flight when the
	// output does not say (Concurrent); default 1.
	Workers         int
	CommitInterval  time.Duration // how often acknowledged offsets are committed (default 1s)
	ShutdownTimeout time.Duration // how long a graceful stop waits for outputs (default 10s)
	RetryInitial    time.Duration // first retry delay of a failing output (default 250ms)
	RetryMax        time.Duration // retry delay cap (default 5s: delivery resumes within 5s of an outage's end)
}

// Stats are the pipeline's counters.
type Stats struct {
	Lines               int64            // lines handed to parsers
	Records             int64            // records completed (events, rejections and skips)
	Events              int64            // events parsed
	ParseErrors         int64            // records rejected by the parser
	Dropped             int64            // events dropped by processors
	DeadLettered        int64            // records and events written to the dead-letter file
	Shipped             map[string]int64 // events delivered, per output
	Retries             map[string]int64 // failed Write calls, per output
	Retried             map[string]int64 // events sent again after a failure, per output
	Down                map[string]bool  // outputs failing now
	Spooling            map[string]bool  // outputs fed from their spool now (behind)
	Spool               map[string]SpoolStats
	SpoolFailing        map[string]bool // the spool cannot be written now (a full disk): the output holds reading back
	ParseErrorsByFormat map[string]int64
	Commits             int64     // checkpoint commits
	LastCommit          time.Time // zero before the first

	// What is in flight (read, not yet acknowledged by every output) and
	// its bounds (MaxInFlight, MaxInFlightBytes; 0: no byte bound), and
	// how long reading has waited for room in all: back-pressure, the
	// outputs taking less than the files give.
	InFlight         int
	InFlightBytes    int64
	MaxInFlight      int
	MaxInFlightBytes int64
	ReadingBlocked   time.Duration
}

// Pipeline moves lines from the tailer through parsers to every output and
// commits file offsets as outputs acknowledge. See Run.
type Pipeline struct {
	cfg PipelineConfig
	log *slog.Logger
	tr  *tracker

	outs []*outState

	// parse-stage state (one goroutine)
	cur       *batch
	curParser Parser // the parser being fed (for per-format counts)

	rejWindow                time.Time // rejected-record log limiting
	now                      func() time.Time
	rejLogged, rejSuppressed int

	stopCtx context.Context // cancelled: stop taking lines
	hardCtx context.Context // cancelled: stop delivering

	lines, records, events, parseErrors, deadLettered, commits, dropped atomic.Int64
	lastCommit                                                          atomic.Int64 // unix nanoseconds

	errMu        sync.Mutex
	errsByFormat map[string]int64

	commitFailures int // consecutive failed commits (committer goroutine, then Run)

	resizeMu      sync.Mutex // resizeInFlight
	inFlightBound int        // the tracker's bound, as resizeInFlight set it last (MaxInFlight at start)
}

type outState struct {
	out      Output
	ch       chan *batch
	conc     *concurrency // the writes in flight allowed now (the output's loop only)
	limit    atomic.Int32 // conc.limit, for the parse stage's bound
	spool    Spool        // nil: none
	spooling atomic.Bool  // new batches go to the spool (set by the parse goroutine or the feeder in an outage, cleared by the parse goroutine)
	spoolErr atomic.Bool  // the last Append failed
	down     atomic.Bool
	shipped  atomic.Int64
	retries  atomic.Int64
	retried  atomic.Int64
}

type batch struct {
	events  []*Event
	tickets []ticket
	pending atomic.Int64 // (output, event) deliveries still to finish
	onDone  func()       // a batch read back from a spool: its ack (no tickets)
	encoded sync.Once    // its events' Encoded is set (see encode)
	left    []int32      // per event: outputs still to finish with it (atomic)
}

// batchPool holds batches whose events are all acknowledged, with their
// slices' capacity.
var batchPool = sync.Pool{New: func() any { return &batch{} }}

func newBatch() *batch { return batchPool.Get().(*batch) }

func (b *batch) reset() {
	clear(b.events) // no pointers to reused events
	b.events, b.tickets, b.onDone = b.events[:0], b.tickets[:0], nil
	b.encoded = sync.Once{}
}

// EstimatedSize is what an event of the record at pos is counted for
// against MaxInFlightBytes before it is encoded: the record's bytes in the
// file, what encoding adds to them (keys, id, agent, tags) and
// EventOverhead. For an audit_login line it is within a few percent of the
// encoded size plus EventOverhead.
func EstimatedSize(pos Position) int {
	return int(pos.End-pos.Offset) + encodingAdds + EventOverhead
}

// encodingAdds is about what the JSON encoding adds to a record's own bytes.
const encodingAdds = 256

// encode sets the Encoded bytes of b's events, once: the first of the
// output workers that takes some of them (or the spool) does it, the
// others wait for it. Encoding there, not in the parse goroutine, spreads
// it over the workers while parsing goes on.
func (p *Pipeline) encode(b *batch) {
	b.encoded.Do(func() {
		var scratch []byte
		for _, ev := range b.events {
			if ev.Encoded != nil {
				continue // read back from a spool
			}
			if ev.pooled {
				// Its own buffer, reused with the event: no allocation
				// once the pool is warm.
				if ev.buf == nil {
					ev.buf = make([]byte, 0, 512)
				}
				ev.buf = ev.Append(ev.buf[:0], p.cfg.Schema)
				ev.Encoded = ev.buf
				continue
			}
			// Encode into a reused buffer, then keep an exact-size copy:
			// one allocation per event, no slack held while in flight.
			scratch = ev.Append(scratch[:0], p.cfg.Schema)
			ev.Encoded = append([]byte(nil), scratch...)
		}
	})
}

// encodeAll encodes the batches of evs (in order, as units and queues
// hold them).
func (p *Pipeline) encodeAll(evs []*Event) {
	var last *batch
	for _, ev := range evs {
		if ev.batch != last && ev.batch != nil {
			last = ev.batch
			p.encode(last)
		}
	}
}

// EventOverhead is what an event takes in memory besides its encoded JSON
// (the Event, its strings, the batch slots), counted against
// MaxInFlightBytes.
const EventOverhead = 384

// NewPipeline checks cfg and fills defaults.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	if len(cfg.Outputs) == 0 {
		return nil, errors.New("pipeline: no output configured")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1024
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4 * cfg.BatchSize
	}
	if cfg.MaxInFlight < 2*cfg.BatchSize {
		cfg.MaxInFlight = 2 * cfg.BatchSize
	}
	if cfg.MaxInFlightBytes <= 0 {
		cfg.MaxInFlightBytes = 8 << 20
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 250 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = 5 * time.Second
		if cfg.RetryMax < cfg.RetryInitial {
			cfg.RetryMax = cfg.RetryInitial
		}
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger, tr: newTracker(cfg.MaxInFlight, cfg.MaxInFlightBytes), inFlightBound: cfg.MaxInFlight, errsByFormat: map[string]int64{}, now: time.Now}
	for _, o := range cfg.Outputs {
		w := cfg.Workers
		if c, ok := o.(Concurrent); ok && c.Workers() > 0 {
			w = c.Workers()
		}
		conc := newConcurrency(w, cfg.BatchSize, cfg.Adaptive)
		st := &outState{out: o, ch: make(chan *batch, 1), conc: conc, spool: cfg.Spools[o.Name()]}
		st.limit.Store(int32(conc.limit))
		p.outs = append(p.outs, st)
	}
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{
		Lines: p.lines.Load(), Records: p.records.Load(), Events: p.events.Load(),
		ParseErrors: p.parseErrors.Load(), DeadLettered: p.deadLettered.Load(), Dropped: p.dropped.Load(),
		Commits: p.commits.Load(), Shipped: map[string]int64{}, Retries: map[string]int64{},
		Retried: map[string]int64{}, Down: map[string]bool{}, ParseErrorsByFormat: map[string]int64{},
		Spooling: map[string]bool{}, Spool: map[string]SpoolStats{}, SpoolFailing: map[string]bool{},
	}
	if ns := p.lastCommit.Load(); ns != 0 {
		s.LastCommit = time.Unix(0, ns)
	}
	l := p.tr.load()
	s.InFlight, s.InFlightBytes, s.MaxInFlight, s.MaxInFlightBytes, s.ReadingBlocked = l.records, l.bytes, l.maxRecords, l.maxBytes, l.blocked
	for _, o := range p.outs {
		s.Shipped[o.out.Name()] = o.shipped.Load()
		s.Retries[o.out.Name()] = o.retries.Load()
		s.Retried[o.out.Name()] = o.retried.Load()
		s.Down[o.out.Name()] = o.down.Load()
		if o.spool != nil {
			s.Spooling[o.out.Name()] = o.spooling.Load()
			s.Spool[o.out.Name()] = o.spool.Stats()
			s.SpoolFailing[o.out.Name()] = o.spoolErr.Load()
		}
	}
	p.errMu.Lock()
	for f, n := range p.errsByFormat {
		s.ParseErrorsByFormat[f] = n
	}
	p.errMu.Unlock()
	return s
}

// Run consumes lines until the channel is closed or ctx is cancelled, then
// drains: the batch in progress is handed to the outputs, and Run waits for
// them to deliver what is in flight. After a close of lines (a one-shot run)
// it waits as long as that takes; after ctx is cancelled (a signal) it waits
// at most ShutdownTimeout, then stops the outputs. Either way, acknowledged
// offsets are committed and the outputs closed before Run returns. Lines read
// but not acknowledged are not committed, so they are read again on the next
// start. Run returns the error of the final commit, if the checkpoint could
// not be written then (earlier failures are retried, and logged once).
func (p *Pipeline) Run(ctx context.Context, lines <-chan []Line) error {
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	p.hardCtx = hardCtx
	stopWake := context.AfterFunc(ctx, p.tr.wake)
	defer stopWake()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		select {
		case <-finished:
		case <-time.After(p.cfg.ShutdownTimeout):
			p.log.Warn("outputs did not drain in time; stopping them, unacknowledged lines will be read again on restart",
				"timeout", p.cfg.ShutdownTimeout, "in_flight", p.tr.InFlight())
			hardCancel()
		}
	}()

	var outWG sync.WaitGroup
	for _, o := range p.outs {
		outWG.Add(1)
		go func() {
			defer outWG.Done()
			p.runOutput(hardCtx, ctx, o)
		}()
	}

	commitDone := make(chan struct{})
	commitStop := make(chan struct{})
	go func() {
		defer close(commitDone)
		t := time.NewTicker(p.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-commitStop:
				return
			case <-t.C:
				p.commit() // a failure is logged once and retried; the final commit decides Run's result
			}
		}
	}()

	p.stopCtx = ctx
	p.parseLoop(ctx, lines)
	if p.rejSuppressed > 0 {
		p.log.Warn("more records rejected than logged; all are in the dead-letter file",
			"not_logged", p.rejSuppressed, "since", p.rejWindow.Format(time.RFC3339))
	}

	// Drain: hand over the partial batch, close the output queues, wait.
	p.dispatch()
	for _, o := range p.outs {
		close(o.ch)
	}
	outWG.Wait()
	close(commitStop)
	<-commitDone
	err := p.commit()
	for _, o := range p.outs {
		if cerr := o.out.Close(); cerr != nil {
			p.log.Error("closing output", "output", o.out.Name(), "err", cerr)
		}
	}
	return err
}

func (p *Pipeline) parseLoop(ctx context.Context, lines <-chan []Line) {
	flush := time.NewTicker(p.cfg.FlushInterval)
	defer flush.Stop()
	emit := p.emit
	for {
		select {
		case <-ctx.Done():
			return
		case ls, ok := <-lines:
			if !ok {
				return
			}
			for i := range ls {
				if ctx.Err() != nil {
					return
				}
				if ls[i].Idle {
					if f, ok := ls[i].Parser.(Idler); ok {
						p.curParser = ls[i].Parser
						f.Idle(emit)
					}
					continue
				}
				if ls[i].EndOfFile {
					if f, ok := ls[i].Parser.(Flusher); ok {
						p.curParser = ls[i].Parser
						f.Flush(emit)
					}
					continue
				}
				p.lines.Add(1)
				p.curParser = ls[i].Parser
				ls[i].Parser.Feed(ls[i], emit)
			}
			if p.cfg.Recycle != nil {
				p.cfg.Recycle(ls)
			}
		case <-flush.C:
			if p.cur != nil && (len(p.cur.events) > 0 || len(p.cur.tickets) > 0) {
				p.dispatch()
			}
			if p.cfg.Tick != nil {
				p.cfg.Tick()
			}
		}
	}
}

// emit handles one record from a parser: tracked (which may block while too
// much is in flight), then batched (encoded later, see encode),
// dead-lettered or skipped.
// Called only from the parse goroutine.
func (p *Pipeline) emit(rec Record) {
	p.records.Add(1)
	if p.cur == nil {
		p.cur = newBatch()
	}
	size := len(rec.Raw)
	if ev := rec.Event; ev != nil {
		ev.Normalize()
		if p.cfg.Enrich != nil {
			p.cfg.Enrich(ev)
		}
		if p.cfg.Keep != nil && !p.cfg.Keep(ev) {
			p.dropped.Add(1)
			rec.Event = nil // acknowledged like a skipped record
		}
	}
	if rec.Event != nil {
		// Encoding waits for the output workers (encode), in parallel with
		// parsing; the in-flight bound counts an estimate until then.
		size = EstimatedSize(rec.Pos)
	}
	tk, ok := p.tr.TryTrack(rec.Pos, size)
	if !ok {
		// Reading is about to block until outputs acknowledge: hand them what
		// is batched so far first, or nothing would ever acknowledge.
		p.dispatch()
		if tk, ok = p.tr.Track(p.stopCtx, rec.Pos, size); !ok {
			return
		}
	}
	switch {
	case rec.Err != nil:
		p.cur.tickets = append(p.cur.tickets, tk)
		p.parseErrors.Add(1)
		format := "unknown"
		if f, ok := p.curParser.(Formatter); ok {
			format = f.Format()
		}
		p.errMu.Lock()
		p.errsByFormat[format]++
		p.errMu.Unlock()
		p.logRejected(rec)
		p.deadLetter(DeadLetterEntry{Path: rec.Pos.Path, Offset: rec.Pos.Offset, Reason: rec.Err.Error(), Raw: rec.Raw})
	case rec.Event != nil:
		p.events.Add(1)
		rec.Event.tk = tk
		p.cur.events = append(p.cur.events, rec.Event)
	default:
		p.cur.tickets = append(p.cur.tickets, tk)
	}
	if len(p.cur.events) >= p.cfg.BatchSize {
		p.dispatch()
		// Let the output goroutines that took the batch send it now. On one
		// core (pipeline.max_procs: 1, the default) they otherwise run only
		// when parsing blocks (an output's queue full, the in-flight bound)
		// or is preempted (every 10 ms), so requests went out late, in
		// bunches. Yielding once a batch, the destination works on each
		// while the next is parsed (bench/kafka.sh's default run, 8
		// interleaved pairs: reading waited 0.4-0.9 s instead of 1.2-1.7 s
		// in 7 of them).
		runtime.Gosched()
	}
}

// logRejected logs rejected records with file and offset, at most
// rejectLogBurst a minute: past that (a flood of bad lines is attacker
// controlled) one line a minute says how many more went to the dead-letter
// file. Called from the parse goroutine only.
func (p *Pipeline) logRejected(rec Record) {
	now := p.now()
	if now.Sub(p.rejWindow) >= time.Minute {
		if p.rejSuppressed > 0 {
			p.log.Warn("more records rejected than logged; all are in the dead-letter file",
				"not_logged", p.rejSuppressed, "since", p.rejWindow.Format(time.RFC3339))
		}
		p.rejWindow, p.rejLogged, p.rejSuppressed = now, 0, 0
	}
	if p.rejLogged < rejectLogBurst {
		p.rejLogged++
		p.log.Warn("rejected record", "file", rec.Pos.Path, "offset", rec.Pos.Offset, "err", rec.Err)
		return
	}
	p.rejSuppressed++
}

const rejectLogBurst = 10

func (p *Pipeline) deadLetter(e DeadLetterEntry) {
	p.deadLettered.Add(1)
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if p.cfg.DeadLetter == nil {
		return
	}
	if err := p.cfg.DeadLetter.Write(e); err != nil {
		p.log.Error("writing dead-letter entry", "file", e.Path, "offset", e.Offset, "err", err)
	}
}

// dispatch hands the current batch to every output.
func (p *Pipeline) dispatch() {
	b := p.cur
	if b == nil || (len(b.events) == 0 && len(b.tickets) == 0) {
		return
	}
	p.cur = newBatch()
	if len(b.tickets) > 0 {
		// Rejections (dead-lettered) and skips are done: acknowledged now,
		// each event is when every output has finished with it.
		p.tr.Ack(b.tickets)
		b.tickets = b.tickets[:0]
	}
	if len(b.events) == 0 {
		b.reset()
		batchPool.Put(b)
		return
	}
	b.pending.Store(int64(len(p.outs) * len(b.events)))
	b.left = slices.Grow(b.left[:0], len(b.events))[:len(b.events)]
	for i, ev := range b.events {
		ev.batch = b
		ev.idx = int32(i)
		b.left[i] = int32(len(p.outs))
	}
	// Outputs that take the batch at once, or that are being fed from
	// their spool, are served first; then those that would make reading
	// wait. Such an output is spooled when it is down or when another
	// output took this batch at once (it is behind the others); when every
	// output is busy, reading waits for them as it does without spools.
	var blocked []*outState
	tookAtOnce := false
	for _, o := range p.outs {
		if o.spooling.Load() {
			// Caught up once everything spooled is delivered (not merely
			// read: that flapped between the two states) and it is up.
			if o.spool.Pending() > 0 || o.down.Load() {
				p.toSpool(o, b)
				continue
			}
			o.spooling.Store(false)
			p.log.Info("output caught up: everything spooled is delivered, new events go to it directly", "output", o.out.Name())
		}
		select {
		case o.ch <- b:
			tookAtOnce = true
		default:
			blocked = append(blocked, o)
		}
	}
	spoolIt := func(o *outState) {
		o.spooling.Store(true)
		p.log.Warn("output behind: what it cannot take now goes to its spool on disk, the other outputs and reading go on",
			"output", o.out.Name(), "down", o.down.Load())
		p.toSpool(o, b)
	}
	for len(blocked) > 0 {
		// Spool those that are down, or behind an output that took the
		// batch; wait for the others, all at once: the first that takes
		// it shows the rest to be behind.
		waiting := blocked[:0:0]
		for _, o := range blocked {
			if o.spool != nil && (tookAtOnce || o.down.Load()) {
				spoolIt(o)
			} else {
				waiting = append(waiting, o)
			}
		}
		if len(waiting) == 0 {
			return
		}
		cases := make([]reflect.SelectCase, 0, len(waiting)+1)
		for _, o := range waiting {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectSend, Chan: reflect.ValueOf(o.ch), Send: reflect.ValueOf(b)})
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.hardCtx.Done())})
		i, _, _ := reflect.Select(cases)
		if i == len(waiting) {
			return // stopping
		}
		tookAtOnce = true
		blocked = append(waiting[:i:i], waiting[i+1:]...)
	}
}

// toSpool appends b to o's spool; the output's share of b is then done.
// While the spool cannot be written (a full disk), the batch goes to the
// output through memory as without a spool, and the spool is tried again
// every RetryInitial: whichever works first.
func (p *Pipeline) toSpool(o *outState, b *batch) {
	p.encode(b)
	for {
		err := o.spool.Append(p.hardCtx, b.events)
		if err == nil {
			if o.spoolErr.Swap(false) {
				p.log.Info("spool written again", "output", o.out.Name())
			}
			p.doneAll(b.events)
			return
		}
		if p.hardCtx.Err() != nil {
			return
		}
		if !o.spoolErr.Swap(true) {
			p.log.Error("spool cannot be written; the output holds reading back until it takes the events or the spool works again",
				"output", o.out.Name(), "err", err)
		}
		t := time.NewTimer(p.cfg.RetryInitial)
		select {
		case o.ch <- b:
			t.Stop()
			return
		case <-t.C:
		case <-p.hardCtx.Done():
			t.Stop()
			return
		}
	}
}

// done records that one output has finished with n events of b; when
// every output has finished every event, the batch is reused (a batch read
// back from a spool is acknowledged then, by its onDone).
func (p *Pipeline) done(b *batch, n int) {
	if b.pending.Add(-int64(n)) == 0 {
		if b.onDone != nil {
			b.onDone()
			return
		}
		b.reset()
		batchPool.Put(b)
	}
}

// doneAll records that one output has finished with evs (delivered or
// dead-lettered). An event that every output has finished with is
// acknowledged at once, not with the rest of its batch: a batch with a
// few refused items then holds only those in flight, and reading goes on
// (Elasticsearch refusing 30 % of items kept every batch waiting for its
// last retries, and a small max_in_flight stalled). It goes back to the
// pool then (Output's contract: no output holds it any more).
func (p *Pipeline) doneAll(evs []*Event) {
	d := donePool.Get().(*doneScratch)
	for i := 0; i < len(evs); {
		b := evs[i].batch
		j := i + 1
		for j < len(evs) && evs[j].batch == b {
			j++
		}
		if b.onDone == nil {
			for _, ev := range evs[i:j] {
				if atomic.AddInt32(&b.left[ev.idx], -1) == 0 {
					d.tks = append(d.tks, ev.tk)
					d.evs = append(d.evs, ev)
				}
			}
		}
		p.done(b, j-i) // may reuse b, and clear evs if it is b.events: last
		i = j
	}
	if len(d.tks) > 0 {
		p.tr.Ack(d.tks)
	}
	for _, ev := range d.evs {
		ev.release()
	}
	clear(d.evs)
	d.tks, d.evs = d.tks[:0], d.evs[:0]
	donePool.Put(d)
}

// doneScratch is doneAll's lists, reused.
type doneScratch struct {
	tks []ticket
	evs []*Event
}

var donePool = sync.Pool{New: func() any { return &doneScratch{} }}

// writeResult is what one Write of a unit came to.
type writeResult struct {
	retry    []*Event // refused for now: to be sent again
	accepted int      // delivered or dead-lettered
	err      error    // the Write's error, if any
	took     time.Duration
	n        int
}

// runOutput feeds one output: it keeps up to Workers writes in flight, each
// a unit of at most BatchSize events taken from refused items first and then
// new batches. Acknowledgements come per event, in whatever order writes
// finish; the tracker moves offsets only over the contiguous prefix.
// Backoff grows only while writes accept nothing (an outage), and then
// one write at a time probes the destination; a write that accepts some
// items resets it, and its refused items go out with the next unit, so a
// cluster that refuses some items under pressure slows delivery only by the
// share it refuses. The loop ends when the queue is closed and everything
// taken is delivered, or when ctx ends (what is unacknowledged then is read
// again on restart).
func (p *Pipeline) runOutput(ctx, stopCtx context.Context, o *outState) {
	work := make(chan []*Event)
	results := make(chan writeResult, o.conc.ceil) // the most writes in flight
	var wg sync.WaitGroup
	spawned := 0
	// spawn starts writers up to n: as many as the limit has allowed yet
	// (an adaptive limit that never grows leaves the others unstarted).
	spawn := func(n int) {
		for ; spawned < n; spawned++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for unit := range work {
					results <- p.write(ctx, o, unit)
				}
			}()
		}
	}
	spawn(o.conc.limit)
	defer func() {
		close(work)
		wg.Wait()
	}()

	name := o.out.Name()
	initial, maxDelay := p.cfg.RetryInitial, p.cfg.RetryMax
	if r, ok := o.out.(Retrier); ok {
		if i, m := r.RetryBackoff(); i > 0 && m >= i {
			initial, maxDelay = i, m
		}
	}
	delay := initial
	var (
		queue     []*Event // refused items first, then new events
		retryN    int      // queue[:retryN] are refused items
		inFlight  int
		closed    bool
		wait      *time.Timer
		waitC     <-chan time.Time
		refusing  bool // some items refused lately (not an outage)
		lastRefus time.Time
		refusedN  int64
	)
	// noteRefused counts items refused under pressure and says so once per
	// state (not per write).
	noteRefused := func(r writeResult) {
		refusedN += int64(len(r.retry))
		lastRefus = time.Now()
		if !refusing {
			refusing = true
			p.log.Warn("output refuses some items; sending them again with new events",
				"output", name, "refused", len(r.retry), "of", r.n, "err", r.err)
		}
	}
	var appended <-chan struct{}
	if o.spool != nil {
		appended = o.spool.Appended()
	}
	// fromSpool moves up to n spooled events into the queue.
	fromSpool := func(n int) bool {
		evs, ack, err := o.spool.Next(n)
		if err != nil {
			p.log.Error("reading the spool", "output", name, "err", err)
		}
		if len(evs) == 0 {
			return err != nil // records given up: look again
		}
		b := &batch{events: evs, onDone: ack}
		b.pending.Store(int64(len(evs)))
		for _, ev := range evs {
			ev.batch = b
		}
		queue = append(queue, evs...)
		return true
	}
	// What is spooled is on disk: a stop (a signal) does not wait for it,
	// the next start reads it. The end of a one-shot run does.
	spoolUnread := func() bool { return o.spool != nil && o.spool.Unread() > 0 && stopCtx.Err() == nil }
	// tryTake takes a batch already waiting for the output, or sees its
	// channel closed, without blocking; false if neither.
	tryTake := func() bool {
		select {
		case b, ok := <-o.ch:
			if !ok {
				closed = true
			} else {
				queue = append(queue, b.events...)
			}
			return true
		default:
			return false
		}
	}
	for {
		if stopCtx.Err() != nil && o.spool != nil && len(queue) > 0 {
			// Stopping: events read from the spool stay there (not yet
			// acknowledged), so the stop need not wait for them.
			queue, retryN, _ = splitSpooled(queue, retryN)
		}
		if inFlight == 0 && (ctx.Err() != nil || (closed && len(queue) == 0 && !spoolUnread())) {
			if wait != nil {
				wait.Stop()
			}
			return
		}
		limit := o.conc.limit
		if o.down.Load() {
			limit = 1 // an outage: one probe at a time
		}
		var send chan []*Event
		var unit []*Event
		if inFlight < limit && waitC == nil && len(queue) > 0 && ctx.Err() == nil {
			n := min(len(queue), p.cfg.BatchSize)
			unit = queue[:n:n]
			send = work
		}
		var in chan *batch
		if room := p.cfg.BatchSize - len(queue); room > 0 && ctx.Err() == nil && spoolUnread() {
			// Memory first (it holds what came before spooling began),
			// then the spool. Refused items count here: an output that
			// refuses does not pull the spool into memory.
			if !closed && tryTake() {
				continue
			}
			if fromSpool(room) {
				continue
			}
		}
		if !closed && len(queue)-retryN < p.cfg.BatchSize {
			in = o.ch
			// Take what is already queued before forming a unit, so that
			// refused items go out with new events where there are any.
			if tryTake() {
				continue
			}
		}
		select {
		case send <- unit:
			inFlight++
			o.conc.sent(inFlight)
			retryN = max(retryN-len(unit), 0)
			queue = queue[len(unit):]
			if len(queue) == 0 {
				queue = nil // let the backing array go
			}
		case b, ok := <-in:
			if !ok {
				closed = true
				continue
			}
			queue = append(queue, b.events...)
		case r := <-results:
			inFlight--
			if ctx.Err() != nil {
				continue // stopping: nothing more is acknowledged
			}
			if o.conc.done(time.Now(), r.took, r.accepted, r.err != nil) {
				o.limit.Store(int32(o.conc.limit))
				spawn(o.conc.limit)
				p.resizeInFlight()
			}
			if p.cfg.OnBatch != nil && r.accepted > 0 {
				p.cfg.OnBatch(name, r.took, r.accepted)
			}
			if len(r.retry) > 0 {
				o.retried.Add(int64(len(r.retry)))
				// Refused items go first in the next unit.
				q := make([]*Event, 0, len(r.retry)+len(queue))
				q = append(q, queue[:retryN]...)
				q = append(q, r.retry...)
				q = append(q, queue[retryN:]...)
				queue, retryN = q, retryN+len(r.retry)
			}
			var pe *PartialError
			refused := errors.As(r.err, &pe) // the destination answered per item
			switch {
			case r.accepted > 0 || len(r.retry) == 0:
				delay = initial
				if o.down.Load() {
					o.down.Store(false)
					p.log.Info("output recovered", "output", name)
				}
				if len(r.retry) > 0 {
					noteRefused(r)
				} else if refusing && time.Since(lastRefus) > refusalQuiet {
					refusing = false
					p.log.Info("output accepts every item again", "output", name, "refused_meanwhile", refusedN)
					refusedN = 0
				}
			case waitC == nil:
				// Nothing accepted: back off. A destination that answered
				// and refused every item of this write (429 under pressure,
				// often the few items left at the end) is not down: its
				// backoff stays short. A failed request is an outage.
				limit := maxDelay
				if refused {
					limit = min(maxDelay, refusalBackoffMax)
					noteRefused(r)
				} else if !o.down.Load() {
					o.down.Store(true)
					if o.spool != nil {
						p.log.Warn("output failing; retrying with backoff, its events go to its spool meanwhile",
							"output", name, "err", r.err)
					} else {
						p.log.Warn("output failing; retrying with backoff, reading is held back until it recovers",
							"output", name, "err", r.err)
					}
				}
				if !refused && o.spool != nil {
					// An outage: what waits here in memory goes to the
					// spool (read back once the output recovers), so that
					// neither reading nor a deleted rotated file depends on
					// it. Events read from the spool stay: they are on disk.
					queue, retryN = p.spoolQueue(ctx, o, queue, retryN)
				}
				// Full jitter over [delay/2, delay], capped exponential growth.
				delay = min(delay, limit)
				d := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
				wait = time.NewTimer(d)
				waitC = wait.C
				delay = min(delay*2, limit)
			}
		case <-appended:
			// Something was spooled: the loop's next turn reads it.
		case <-waitC:
			waitC = nil
		case <-ctx.Done():
		}
	}
}

// resizeInFlight sets the in-flight bound to MaxInFlight plus a batch for
// each write in flight that an output's adaptive limit allows beyond its
// workers (the most of any output: every event is in flight at all).
func (p *Pipeline) resizeInFlight() {
	p.resizeMu.Lock() // outputs' loops call it: the last to set the bound saw every limit
	defer p.resizeMu.Unlock()
	extra := 0
	for _, o := range p.outs {
		extra = max(extra, int(o.limit.Load())-o.conc.floor)
	}
	bound := min(adaptiveGrowth*p.cfg.MaxInFlight, p.cfg.MaxInFlight+extra*p.cfg.BatchSize)
	if bound == p.inFlightBound {
		return
	}
	p.inFlightBound = bound
	if p.cfg.OnInFlightBound != nil {
		p.cfg.OnInFlightBound(bound)
	}
	p.tr.setMax(bound)
}

// adaptiveGrowth is how many times MaxInFlight the in-flight bound grows
// to at most with Adaptive (the auto memory limit counts it).
const adaptiveGrowth = 4

// spoolQueue appends the queue's events that came through memory to o's
// spool, and returns the queue without them.
func (p *Pipeline) spoolQueue(ctx context.Context, o *outState, queue []*Event, retryN int) ([]*Event, int) {
	mem, memRetries, keep := splitSpooled(queue, retryN)
	if len(mem) == 0 {
		return queue, retryN
	}
	p.encodeAll(mem)
	// Without waiting for room: this loop is the one that frees the spool
	// (it reads it back once the output delivers), so waiting here for a
	// full spool would wait for ever, the output stuck after its return.
	now, cancel := context.WithCancel(ctx)
	cancel()
	if err := o.spool.Append(now, mem); err != nil {
		return queue, retryN // full (or failing): kept in memory; the next failed probe tries again
	}
	if !o.spooling.Swap(true) {
		p.log.Warn("output behind: what it cannot take now goes to its spool on disk, the other outputs and reading go on",
			"output", o.out.Name(), "down", true)
	}
	p.doneAll(mem)
	return keep, retryN - memRetries
}

// splitSpooled splits an output's queue into the events that came through
// memory and those read back from its spool (they stay in the spool until
// acknowledged), each in order; memRetries is how many of the first were
// among the queue's first retryN (refused items).
func splitSpooled(queue []*Event, retryN int) (mem []*Event, memRetries int, spooled []*Event) {
	for i, ev := range queue {
		if ev.batch.onDone != nil {
			spooled = append(spooled, ev)
			continue
		}
		mem = append(mem, ev)
		if i < retryN {
			memRetries++
		}
	}
	return mem, memRetries, spooled
}

// refusalQuiet is how long an output must accept every item before the
// "refuses some items" state ends (one log line per state, not per batch).
const refusalQuiet = 30 * time.Second

// refusalBackoffMax caps the backoff of writes whose every item was refused
// (the destination answers, under pressure): it never grows to RetryMax.
const refusalBackoffMax = time.Second

// write sends one unit and settles what it can: delivered and permanently
// refused items are done (the latter dead-lettered); the others come back
// in retry. After ctx ends nothing is settled.
func (p *Pipeline) write(ctx context.Context, o *outState, unit []*Event) writeResult {
	name := o.out.Name()
	p.encodeAll(unit)
	start := time.Now()
	err := o.out.Write(ctx, unit)
	r := writeResult{err: err, took: time.Since(start), n: len(unit)}
	if err == nil {
		o.shipped.Add(int64(len(unit)))
		r.accepted = len(unit)
		p.doneAll(unit)
		return r
	}
	if ctx.Err() != nil {
		return writeResult{}
	}
	o.retries.Add(1)
	var pe *PartialError
	switch {
	case errors.As(err, &pe):
		failed := make(map[int]bool, len(pe.Failed))
		var settled []*Event
		for _, f := range pe.Failed {
			if f.Index < 0 || f.Index >= len(unit) || failed[f.Index] {
				continue
			}
			failed[f.Index] = true
			ev := unit[f.Index]
			if errors.Is(f.Err, ErrPermanent) {
				p.deadLetter(DeadLetterEntry{Path: ev.Path, Offset: ev.Offset, Output: name,
					Reason: f.Err.Error(), Event: ev})
				settled = append(settled, ev)
			} else {
				r.retry = append(r.retry, ev)
			}
		}
		for i, ev := range unit {
			if !failed[i] {
				settled = append(settled, ev)
			}
		}
		o.shipped.Add(int64(len(unit) - len(failed)))
		r.accepted = len(settled)
		p.doneAll(settled)
	case errors.Is(err, ErrPermanent):
		for _, ev := range unit {
			p.deadLetter(DeadLetterEntry{Path: ev.Path, Offset: ev.Offset, Output: name,
				Reason: err.Error(), Event: ev})
		}
		r.accepted = len(unit)
		p.doneAll(unit)
	default:
		r.retry = unit
	}
	return r
}

// commit syncs outputs and the dead-letter file, then writes the offsets that
// moved. Called from the committer goroutine and once at the end of Run.
func (p *Pipeline) commit() error {
	dirty := p.tr.Dirty()
	if len(dirty) == 0 || p.cfg.Checkpoint == nil {
		// Nothing moved: the registry is up to date as of now.
		p.lastCommit.Store(time.Now().UnixNano())
		return nil
	}
	fail := func(err error) error {
		p.tr.restore(dirty)
		if p.commitFailures++; p.commitFailures == 1 {
			// Once per state change (a full disk fails every second).
			p.log.Error("checkpoint not committed; retrying every commit interval until it works", "err", err)
		}
		return err
	}
	for _, o := range p.outs {
		if s, ok := o.out.(Syncer); ok {
			if err := s.Sync(); err != nil {
				return fail(fmt.Errorf("syncing output %s: %w", o.out.Name(), err))
			}
		}
	}
	for _, o := range p.outs {
		if o.spool != nil {
			if err := o.spool.Sync(); err != nil {
				return fail(fmt.Errorf("syncing the spool of output %s: %w", o.out.Name(), err))
			}
		}
	}
	if p.cfg.DeadLetter != nil {
		if err := p.cfg.DeadLetter.Sync(); err != nil {
			return fail(fmt.Errorf("syncing dead-letter file: %w", err))
		}
	}
	if err := p.cfg.Checkpoint.Commit(dirty); err != nil {
		return fail(fmt.Errorf("committing offsets: %w", err))
	}
	if p.commitFailures > 0 {
		p.log.Info("checkpoint committed again", "failed_attempts", p.commitFailures)
		p.commitFailures = 0
	}
	p.commits.Add(1)
	p.lastCommit.Store(time.Now().UnixNano())
	return nil
}
