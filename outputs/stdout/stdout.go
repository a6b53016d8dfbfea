// Package stdout is the stdout output: one event per line, NDJSON, for
// quick starts, debugging and piping into other tools.
package stdout

import (
	"bufio"
	"context"
	"io"
	"os"
	"sync"

	"github.com/auditlogin/auditlogin"
)

// Output writes events to a writer (os.Stdout by default).
type Output struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// New returns an Output writing to w (nil: os.Stdout).
func New(w io.Writer) *Output {
	if w == nil {
		w = os.Stdout
	}
	return &Output{w: bufio.NewWriterSize(w, 64<<10)}
}

// Name implements auditlogin.Output.
func (o *Output) Name() string { return "stdout" }

// Write implements auditlogin.Output. The batch is flushed to the writer
// before Write returns: a pipe reader sees it, and nothing is kept in memory.
func (o *Output) Write(ctx context.Context, batch []*auditlogin.Event) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range batch {
		o.w.Write(ev.Encoded)
		o.w.WriteByte('\n')
	}
	return o.w.Flush()
}

// Close implements auditlogin.Output.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Flush()
}
