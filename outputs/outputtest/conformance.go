package outputtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Harness gives the conformance suite a fresh output and a way to read back,
// in order, the encoded events the destination holds. want is how many the
// suite expects, so that a reader of a stream knows when to stop waiting (it
// must still return everything it finds).
type Harness struct {
	New      func(t *testing.T) auditlogin.Output
	ReadBack func(t *testing.T, want int) [][]byte
}

// Events returns n distinct, encoded events.
func Events(n int, prefix string) []*auditlogin.Event {
	evs := make([]*auditlogin.Event, n)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range evs {
		ev := &auditlogin.Event{
			Timestamp: base.Add(time.Duration(i) * time.Second),
			TS:        base.Add(time.Duration(i) * time.Second).Format("2006-01-02 15:04:05"),
			Type:      auditlogin.TypeSuccess, MyHost: "db-test", Thread: fmt.Sprint(i + 1),
			User: auditlogin.Str(prefix + "user"), PrivUser: auditlogin.Str(prefix + "user"),
			Host: auditlogin.Str("client"), IP: auditlogin.Str("192.0.2.1"),
			Format: "audit_login", Tags: []string{}, Path: "/var/lib/mysql/audit_login.log", Offset: int64(i) * 180,
		}
		ev.ID = ev.ComputeID()
		ev.Encoded = ev.AppendJSON(nil)
		evs[i] = ev
	}
	return evs
}

// Run is the conformance suite every output passes.
func Run(t *testing.T, h Harness) {
	t.Run("DeliversInOrder", func(t *testing.T) {
		out := h.New(t)
		evs := Events(250, "a")
		ctx := context.Background()
		for _, b := range [][]*auditlogin.Event{evs[:100], evs[100:101], evs[101:]} {
			if err := out.Write(ctx, b); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		if s, ok := out.(auditlogin.Syncer); ok {
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
		if err := out.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		got := h.ReadBack(t, len(evs))
		if len(got) != len(evs) {
			t.Fatalf("destination holds %d events, want %d", len(got), len(evs))
		}
		for i := range evs {
			if !bytes.Equal(got[i], evs[i].Encoded) {
				t.Fatalf("event %d differs:\n got %s\nwant %s", i, got[i], evs[i].Encoded)
			}
		}
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		out := h.New(t)
		if err := out.Write(context.Background(), nil); err != nil {
			t.Fatalf("Write(nil): %v", err)
		}
		if err := out.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if got := h.ReadBack(t, 0); len(got) != 0 {
			t.Fatalf("empty batch wrote %d events", len(got))
		}
	})
	t.Run("CancelledContextReturns", func(t *testing.T) {
		out := h.New(t)
		defer out.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- out.Write(ctx, Events(3, "c")) }()
		select {
		case err := <-done:
			// Either it wrote before looking at ctx (and says so with nil),
			// or it did not, and must not claim it did.
			if err != nil && errors.Is(err, auditlogin.ErrPermanent) {
				t.Fatalf("a cancelled write is not a permanent failure (its events would be dead-lettered): %v", err)
			}
			if err == nil {
				if s, ok := out.(auditlogin.Syncer); ok {
					s.Sync()
				}
				if got := h.ReadBack(t, 3); len(got) != 3 {
					t.Fatalf("Write said nil for a cancelled context, but the destination holds %d of its 3 events", len(got))
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Write with a cancelled context did not return")
		}
	})
}
