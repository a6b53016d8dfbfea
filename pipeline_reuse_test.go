package auditlogin_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

// pooledParser is lineParser with events from auditlogin.NewEvent, which the
// pipeline reuses once every output is done with them.
type pooledParser struct{}

func (pooledParser) Feed(l auditlogin.Line, emit func(auditlogin.Record)) {
	ev := auditlogin.NewEvent()
	ev.Type, ev.Thread, ev.MyHost, ev.User = auditlogin.TypeSuccess, string(l.Data), "db", auditlogin.Str("u"+string(l.Data))
	ev.Path, ev.Offset = l.Pos.Path, l.Pos.Offset
	emit(auditlogin.Record{Pos: l.Pos, Event: ev})
}

// checking wraps a Fake: at each Write it checks that every event is whole
// (its encoding is of its own fields) and notes the events' addresses.
type checking struct {
	*outputtest.Fake
	mu    sync.Mutex
	seen  map[*auditlogin.Event]bool
	wrong []string
}

func (c *checking) Write(ctx context.Context, batch []*auditlogin.Event) error {
	c.mu.Lock()
	for _, ev := range batch {
		c.seen[ev] = true
		if want := fmt.Sprintf(`"thread":"%s","user":"u%s"`, ev.Thread, ev.Thread); !strings.Contains(string(ev.Encoded), want) {
			c.wrong = append(c.wrong, fmt.Sprintf("thread %s encoded as %.120s", ev.Thread, ev.Encoded))
		}
	}
	c.mu.Unlock()
	return c.Fake.Write(ctx, batch)
}

// An event is reused only once every output has finished with it: with one
// fast output and one slow output that refuses a third of the items once
// (they are sent again later, with newer events), each output gets every
// event once, whole, although events are reused many times over.
func TestPipelineReusesEventsOnlyWhenEveryOutputIsDone(t *testing.T) {
	fast := &checking{Fake: outputtest.NewFake("fast"), seen: map[*auditlogin.Event]bool{}}
	slow := &checking{Fake: outputtest.NewFake("slow"), seen: map[*auditlogin.Event]bool{}}
	fast.SetWorkers(2)
	slow.SetWorkers(3)
	var mu sync.Mutex
	refused := map[string]bool{}
	slow.FailItems(func(ev *auditlogin.Event) error {
		mu.Lock()
		defer mu.Unlock()
		var n int
		fmt.Sscan(ev.Thread, &n)
		if n%3 == 0 && !refused[ev.Thread] {
			refused[ev.Thread] = true
			return errors.New("429 es_rejected_execution_exception")
		}
		return nil
	})
	p := newPipeline(t, []auditlogin.Output{fast, slow}, &memCheckpoint{}, nil, func(c *auditlogin.PipelineConfig) {
		c.MaxInFlight = 256 // few events in flight: each is reused many times
	})
	ch := make(chan []auditlogin.Line)
	done := make(chan error)
	go func() { done <- p.Run(context.Background(), ch) }()
	const n = 20000
	var batch []auditlogin.Line
	for i := range n {
		batch = append(batch, auditlogin.Line{Data: []byte(fmt.Sprint(i)), Parser: pooledParser{},
			Pos: auditlogin.Position{File: fileA, Path: "/a.log", Offset: int64(i) * 10, End: int64(i+1) * 10}})
		if len(batch) == 50 || i == n-1 {
			ch <- batch
			batch = nil
		}
	}
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, o := range []*checking{fast, slow} {
		if len(o.wrong) > 0 {
			t.Fatalf("%s was given %d events changed under it, such as %s", o.Name(), len(o.wrong), o.wrong[0])
		}
		got := map[string]int{}
		for _, ev := range o.Delivered() {
			got[ev.Thread]++
		}
		for i := range n {
			if c := got[fmt.Sprint(i)]; c != 1 {
				t.Fatalf("%s: thread %d delivered %d times", o.Name(), i, c)
			}
		}
		if len(o.seen) >= n/2 {
			t.Fatalf("%s saw %d distinct events for %d records: events were not reused, the test shows nothing", o.Name(), len(o.seen), n)
		}
	}
	if len(refused) < n/4 {
		t.Fatalf("only %d items refused", len(refused))
	}
}
