package stallfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A write to a stalled file system blocks in the kernel until Resume, then
// lands; reads and other files' metadata go on meanwhile.
func TestStallHoldsWritesUntilResume(t *testing.T) {
	s := Mount(t)
	p := filepath.Join(s.Dir, "log")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("one\n"); err != nil {
		t.Fatal(err)
	}
	s.Stall()
	done := make(chan error, 1)
	go func() { _, err := f.WriteString("two\n"); done <- err }()
	if !s.WaitHeld(1, 10*time.Second) {
		t.Fatal("the write was not held")
	}
	select {
	case err := <-done:
		t.Fatalf("the write returned while stalled: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 4 {
		t.Fatalf("stat while stalled: %v %v", fi, err)
	}
	s.Resume()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(s.Backing, "log")); string(data) != "one\ntwo\n" {
		t.Fatalf("backing file holds %q", data)
	}
}
