// Package outputtest has a scriptable fake output (fail N times, fail chosen
// items, block, permanent errors) for pipeline tests, and a conformance suite
// that every real output passes.
package outputtest

import (
	"context"
	"errors"
	"sync"

	"github.com/auditlogin/auditlogin"
)

// ErrScripted is the transient error a Fake returns when told to fail.
var ErrScripted = errors.New("scripted failure")

// Fake records what it is given and fails as scripted. Safe for concurrent use.
type Fake struct {
	name string

	mu        sync.Mutex
	delivered []*auditlogin.Event
	calls     int
	failNext  int
	failErr   error
	itemErr   func(*auditlogin.Event) error
	blocked   chan struct{}
	closed    bool
	workers   int
	hold      func([]*auditlogin.Event) <-chan struct{}
	inFlight  int
	maxInFl   int
	batches   [][]*auditlogin.Event
}

// SetWorkers makes the Fake Concurrent with n workers (0: not concurrent).
func (f *Fake) SetWorkers(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workers = n
}

// Workers implements auditlogin.Concurrent when SetWorkers was called.
func (f *Fake) Workers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workers
}

// HoldWhere makes each Write whose batch fn returns a channel for wait on
// that channel (or its context) before it does anything else; nil: go on.
func (f *Fake) HoldWhere(fn func(batch []*auditlogin.Event) <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = fn
}

// MaxInFlight returns the most Write calls that were running at once.
func (f *Fake) MaxInFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInFl
}

// ResetMaxInFlight forgets the most writes seen at once: MaxInFlight then
// counts from the calls that start after it.
func (f *Fake) ResetMaxInFlight() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxInFl = 0
}

// Batches returns every batch Write was given, in call order.
func (f *Fake) Batches() [][]*auditlogin.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]*auditlogin.Event(nil), f.batches...)
}

// NewFake returns a Fake named name.
func NewFake(name string) *Fake { return &Fake{name: name} }

// FailNext makes the next n Write calls fail as a whole with err (nil: ErrScripted).
func (f *Fake) FailNext(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = ErrScripted
	}
	f.failNext, f.failErr = n, err
}

// FailItems makes Write report, per event, the error fn returns (nil: delivered).
func (f *Fake) FailItems(fn func(*auditlogin.Event) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.itemErr = fn
}

// Block makes Write wait (until release is called or its context ends).
func (f *Fake) Block() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.blocked = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.blocked == ch {
				f.blocked = nil
			}
			f.mu.Unlock()
			close(ch)
		})
	}
}

// Delivered returns the events delivered so far, in order.
func (f *Fake) Delivered() []*auditlogin.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*auditlogin.Event(nil), f.delivered...)
}

// Calls returns how many times Write was called.
func (f *Fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Name implements auditlogin.Output.
func (f *Fake) Name() string { return f.name }

// Write implements auditlogin.Output.
func (f *Fake) Write(ctx context.Context, batch []*auditlogin.Event) error {
	f.mu.Lock()
	f.calls++
	f.batches = append(f.batches, copyEvents(batch))
	f.inFlight++
	f.maxInFl = max(f.maxInFl, f.inFlight)
	blocked := f.blocked
	hold := f.hold
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if hold != nil {
		if ch := hold(batch); ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if blocked != nil {
		select {
		case <-blocked:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext > 0 {
		f.failNext--
		return f.failErr
	}
	var pe auditlogin.PartialError
	for i, ev := range batch {
		if f.itemErr != nil {
			if err := f.itemErr(ev); err != nil {
				pe.Failed = append(pe.Failed, auditlogin.ItemError{Index: i, Err: err})
				continue
			}
		}
		f.delivered = append(f.delivered, copyEvent(ev))
	}
	if len(pe.Failed) > 0 {
		return &pe
	}
	return nil
}

// copyEvent returns a copy of ev that the Fake may keep: the pipeline
// reuses an event once every output is done with it (auditlogin.NewEvent),
// so an output must not keep the event itself.
func copyEvent(ev *auditlogin.Event) *auditlogin.Event {
	return ev.Clone()
}

func copyEvents(evs []*auditlogin.Event) []*auditlogin.Event {
	out := make([]*auditlogin.Event, len(evs))
	for i, ev := range evs {
		out[i] = copyEvent(ev)
	}
	return out
}

// Close implements auditlogin.Output.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}
