package auditlogin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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

	// Enrich, when set, is called for each event after parsing and before the
	// id is computed (if the parser left it empty) and the event is encoded.
	Enrich func(*Event)

	BatchSize       int           // events per batch (default 1024)
	FlushInterval   time.Duration // a partial batch waits at most this long (default 200ms)
	MaxInFlight     int           // unacknowledged records before reading blocks (default 16*BatchSize, at least 2*BatchSize)
	CommitInterval  time.Duration // how often acknowledged offsets are committed (default 1s)
	ShutdownTimeout time.Duration // how long a graceful stop waits for outputs (default 10s)
	RetryInitial    time.Duration // first retry delay of a failing output (default 250ms)
	RetryMax        time.Duration // retry delay cap (default 30s)
}

// Stats are the pipeline's counters.
type Stats struct {
	Lines               int64            // lines handed to parsers
	Records             int64            // records completed (events, rejections and skips)
	Events              int64            // events parsed
	ParseErrors         int64            // records rejected by the parser
	DeadLettered        int64            // records and events written to the dead-letter file
	Shipped             map[string]int64 // events delivered, per output
	Retries             map[string]int64 // failed Write calls, per output
	Retried             map[string]int64 // events sent again after a failure, per output
	Down                map[string]bool  // outputs failing now
	ParseErrorsByFormat map[string]int64
	Commits             int64     // checkpoint commits
	LastCommit          time.Time // zero before the first
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
	rejLogged, rejSuppressed int

	stopCtx context.Context // cancelled: stop taking lines
	hardCtx context.Context // cancelled: stop delivering

	lines, records, events, parseErrors, deadLettered, commits atomic.Int64
	lastCommit                                                 atomic.Int64 // unix nanoseconds

	errMu        sync.Mutex
	errsByFormat map[string]int64
}

type outState struct {
	out     Output
	ch      chan *batch
	down    atomic.Bool
	shipped atomic.Int64
	retries atomic.Int64
	retried atomic.Int64
}

type batch struct {
	events  []*Event
	tickets []ticket
	pending atomic.Int32
}

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
		cfg.MaxInFlight = 16 * cfg.BatchSize
	}
	if cfg.MaxInFlight < 2*cfg.BatchSize {
		cfg.MaxInFlight = 2 * cfg.BatchSize
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
		cfg.RetryMax = 30 * time.Second
		if cfg.RetryMax < cfg.RetryInitial {
			cfg.RetryMax = cfg.RetryInitial
		}
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger, tr: newTracker(cfg.MaxInFlight), errsByFormat: map[string]int64{}}
	for _, o := range cfg.Outputs {
		p.outs = append(p.outs, &outState{out: o, ch: make(chan *batch, 2)})
	}
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	s := Stats{
		Lines: p.lines.Load(), Records: p.records.Load(), Events: p.events.Load(),
		ParseErrors: p.parseErrors.Load(), DeadLettered: p.deadLettered.Load(),
		Commits: p.commits.Load(), Shipped: map[string]int64{}, Retries: map[string]int64{},
		Retried: map[string]int64{}, Down: map[string]bool{}, ParseErrorsByFormat: map[string]int64{},
	}
	if ns := p.lastCommit.Load(); ns != 0 {
		s.LastCommit = time.Unix(0, ns)
	}
	for _, o := range p.outs {
		s.Shipped[o.out.Name()] = o.shipped.Load()
		s.Retries[o.out.Name()] = o.retries.Load()
		s.Retried[o.out.Name()] = o.retried.Load()
		s.Down[o.out.Name()] = o.down.Load()
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
// start. Run returns the first error that stopped it: a checkpoint that could
// not be written.
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
			p.runOutput(hardCtx, o)
		}()
	}

	commitDone := make(chan struct{})
	commitStop := make(chan struct{})
	var commitErr error
	go func() {
		defer close(commitDone)
		t := time.NewTicker(p.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-commitStop:
				return
			case <-t.C:
				if err := p.commit(); err != nil {
					commitErr = err
				}
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
	if err == nil {
		err = commitErr
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
		case <-flush.C:
			if p.cur != nil && (len(p.cur.events) > 0 || len(p.cur.tickets) > 0) {
				p.dispatch()
			}
		}
	}
}

// emit handles one record from a parser: tracked, then batched, dead-lettered
// or skipped. Called only from the parse goroutine.
func (p *Pipeline) emit(rec Record) {
	p.records.Add(1)
	if p.cur == nil {
		p.cur = &batch{}
	}
	if p.tr.full() {
		// Reading is about to block until outputs acknowledge: hand them what
		// is batched so far first, or nothing would ever acknowledge.
		p.dispatch()
	}
	tk, ok := p.tr.Track(p.stopCtx, rec.Pos)
	if !ok {
		return
	}
	p.cur.tickets = append(p.cur.tickets, tk)
	switch {
	case rec.Err != nil:
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
		ev := rec.Event
		p.events.Add(1)
		if p.cfg.Enrich != nil {
			p.cfg.Enrich(ev)
		}
		if ev.ID == "" {
			ev.ID = ev.ComputeID()
		}
		if ev.Tags == nil {
			ev.Tags = []string{}
		}
		ev.Encoded = ev.AppendJSON(make([]byte, 0, 384))
		p.cur.events = append(p.cur.events, ev)
	}
	if len(p.cur.events) >= p.cfg.BatchSize {
		p.dispatch()
	}
}

// logRejected logs rejected records with file and offset, at most
// rejectLogBurst a minute: past that (a flood of bad lines is attacker
// controlled) one line a minute says how many more went to the dead-letter
// file. Called from the parse goroutine only.
func (p *Pipeline) logRejected(rec Record) {
	now := time.Now()
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
	p.cur = &batch{}
	if b == nil || (len(b.events) == 0 && len(b.tickets) == 0) {
		return
	}
	if len(b.events) == 0 {
		p.tr.Ack(b.tickets) // only rejections and skips: nothing to deliver
		return
	}
	b.pending.Store(int32(len(p.outs)))
	for _, o := range p.outs {
		select {
		case o.ch <- b:
		case <-p.hardCtx.Done():
			return
		}
	}
}

func (p *Pipeline) runOutput(ctx context.Context, o *outState) {
	for b := range o.ch {
		if ctx.Err() != nil {
			continue // drain the queue; nothing more is acknowledged
		}
		start := time.Now()
		if !p.deliver(ctx, o, b.events) {
			continue
		}
		if p.cfg.OnBatch != nil {
			p.cfg.OnBatch(o.out.Name(), time.Since(start), len(b.events))
		}
		if b.pending.Add(-1) == 0 {
			p.tr.Ack(b.tickets)
		}
	}
}

// deliver writes events to one output until each is delivered or
// dead-lettered; false means ctx ended first.
func (p *Pipeline) deliver(ctx context.Context, o *outState, events []*Event) bool {
	name := o.out.Name()
	todo := events
	delay, maxDelay := p.cfg.RetryInitial, p.cfg.RetryMax
	if r, ok := o.out.(Retrier); ok {
		if i, m := r.RetryBackoff(); i > 0 && m >= i {
			delay, maxDelay = i, m
		}
	}
	for {
		err := o.out.Write(ctx, todo)
		if err == nil {
			o.shipped.Add(int64(len(todo)))
			if o.down.Load() {
				o.down.Store(false)
				p.log.Info("output recovered", "output", name)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		o.retries.Add(1)
		var retry []*Event
		var pe *PartialError
		switch {
		case errors.As(err, &pe):
			failed := make(map[int]bool, len(pe.Failed))
			for _, f := range pe.Failed {
				if f.Index < 0 || f.Index >= len(todo) || failed[f.Index] {
					continue
				}
				failed[f.Index] = true
				ev := todo[f.Index]
				if errors.Is(f.Err, ErrPermanent) {
					p.deadLetter(DeadLetterEntry{Path: ev.Path, Offset: ev.Offset, Output: name,
						Reason: f.Err.Error(), Event: ev})
				} else {
					retry = append(retry, ev)
				}
			}
			o.shipped.Add(int64(len(todo) - len(failed)))
		case errors.Is(err, ErrPermanent):
			for _, ev := range todo {
				p.deadLetter(DeadLetterEntry{Path: ev.Path, Offset: ev.Offset, Output: name,
					Reason: err.Error(), Event: ev})
			}
		default:
			retry = todo
		}
		if len(retry) == 0 {
			return true
		}
		o.retried.Add(int64(len(retry)))
		if !o.down.Load() {
			o.down.Store(true)
			p.log.Warn("output failing; retrying with backoff, reading is held back until it recovers",
				"output", name, "err", err)
		}
		todo = retry
		// Full jitter over [delay/2, delay], capped exponential growth.
		d := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
		delay *= 2
		if delay > maxDelay {
			delay = maxDelay
		}
	}
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
		p.log.Error("checkpoint not committed; will retry", "err", err)
		return err
	}
	for _, o := range p.outs {
		if s, ok := o.out.(Syncer); ok {
			if err := s.Sync(); err != nil {
				return fail(fmt.Errorf("syncing output %s: %w", o.out.Name(), err))
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
	p.commits.Add(1)
	p.lastCommit.Store(time.Now().UnixNano())
	return nil
}
