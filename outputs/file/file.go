// Package file is the NDJSON file output and the dead-letter file: one JSON
// object per line, appended through a buffer, flushed to the OS at the end of
// every batch, fsynced before every registry commit (Sync), and rotated by
// size (path.1, path.2, ... up to MaxFiles).
package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/auditlogin/auditlogin"
)

// Config configures a file writer.
type Config struct {
	Path     string
	MaxSize  int64 // rotate when the file would exceed this many bytes (0: never)
	MaxFiles int   // rotated files kept (default 7)
	Perm     os.FileMode
	// BufferSize is the write buffer's size (default 256 KiB: a batch of
	// events in a few write calls). The dead-letter file, written seldom,
	// takes a small one.
	BufferSize int
}

// writer is an append-only NDJSON file with size-based rotation.
type writer struct {
	cfg  Config
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
	// broken: a failed write could not be undone yet; the next write
	// truncates first.
	broken     bool
	brokenSize int64
	rotations  int // files started by rotate
}

func newWriter(cfg Config) (*writer, error) {
	if cfg.Path == "" {
		return nil, errors.New("file: path is empty")
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = 7
	}
	if cfg.Perm == 0 {
		cfg.Perm = 0o640
	}
	w := &writer{cfg: cfg}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *writer) open() error {
	if err := os.MkdirAll(filepath.Dir(w.cfg.Path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(w.cfg.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, w.cfg.Perm) // read: the partial-line check
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	size, err := dropPartialLine(f, fi.Size())
	if err != nil {
		f.Close()
		return fmt.Errorf("removing the partial last line of %s: %w", w.cfg.Path, err)
	}
	w.f, w.size = f, size
	bufSize := w.cfg.BufferSize
	if bufSize <= 0 {
		bufSize = 256 << 10
	}
	w.w = bufio.NewWriterSize(f, bufSize)
	return nil
}

// dropPartialLine truncates f after its last newline: a line without one is
// what a crash or a full disk left of a record that was never acknowledged
// (the pipeline sends it again), and appending to it would glue the next
// record onto it. It returns the new size.
func dropPartialLine(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && n < int(end-start) {
			return size, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep := start + int64(i) + 1
			if keep == size {
				return size, nil
			}
			return keep, f.Truncate(keep)
		}
		end = start
	}
	if size == 0 {
		return 0, nil
	}
	return 0, f.Truncate(0)
}

// appendLines writes n lines, flushed, all or none: a failure (a full disk)
// is undone, and the caller's retry writes them whole, once.
func (w *writer) appendLines(n int, line func(i int) []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		if err := w.undo(w.brokenSize); err != nil {
			return fmt.Errorf("writing %s: removing the rest of a failed write: %w", w.cfg.Path, err)
		}
	}
	start, rot := w.size, w.rotations // the buffer is empty: every Write ends with a flush
	fail := func(err error) error {
		// A full disk, a failing one: undo the batch, so that the retry
		// (the pipeline sends it again) writes it whole, once.
		w.brokenSize = start
		if uerr := w.undo(start); uerr != nil {
			return fmt.Errorf("writing %s: %w (and undoing it: %v)", w.cfg.Path, err, uerr)
		}
		return fmt.Errorf("writing %s: %w", w.cfg.Path, err)
	}
	for i := range n {
		if err := w.writeLine(line(i)); err != nil {
			if w.rotations != rot {
				// Rotated meanwhile: the records before it are in the old
				// file (synced); undo what the new one holds.
				start = 0
			}
			return fail(err)
		}
	}
	if err := w.w.Flush(); err != nil {
		if w.rotations != rot {
			start = 0
		}
		return fail(err)
	}
	return nil
}

// undo drops what a failed write left (buffered bytes, a partial record on
// disk) by truncating the file back to size, the end of the last complete
// write, so that the retry neither duplicates nor glues records.
func (w *writer) undo(size int64) error {
	w.w.Reset(w.f)
	if err := w.f.Truncate(size); err != nil {
		w.broken = true
		return err
	}
	w.size, w.broken = size, false
	return nil
}

// writeLine appends line and a newline; the caller holds mu.
func (w *writer) writeLine(line []byte) error {
	n := int64(len(line) + 1)
	if w.cfg.MaxSize > 0 && w.size > 0 && w.size+n > w.cfg.MaxSize {
		if err := w.rotate(); err != nil {
			return fmt.Errorf("rotating %s: %w", w.cfg.Path, err)
		}
	}
	if _, err := w.w.Write(line); err != nil {
		return err
	}
	if err := w.w.WriteByte('\n'); err != nil {
		return err
	}
	w.size += n
	return nil
}

// rotate makes the current file durable, shifts path.N, and reopens path.
func (w *writer) rotate() error {
	if err := w.syncLocked(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	base := w.cfg.Path
	os.Remove(fmt.Sprintf("%s.%d", base, w.cfg.MaxFiles))
	for i := w.cfg.MaxFiles - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", base, i), fmt.Sprintf("%s.%d", base, i+1))
	}
	if err := os.Rename(base, base+".1"); err != nil {
		return err
	}
	w.rotations++
	return w.open()
}

func (w *writer) syncLocked() error {
	if err := w.w.Flush(); err != nil {
		return err
	}
	return w.f.Sync()
}

func (w *writer) sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.syncLocked()
}

func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.syncLocked()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Output is the NDJSON file output.
type Output struct{ w *writer }

// New opens (or creates) the output file.
func New(cfg Config) (*Output, error) {
	w, err := newWriter(cfg)
	if err != nil {
		return nil, err
	}
	return &Output{w: w}, nil
}

// Name implements auditlogin.Output.
func (o *Output) Name() string { return "file" }

// Write implements auditlogin.Output: the batch is in the OS when it returns;
// Sync makes it durable.
func (o *Output) Write(ctx context.Context, batch []*auditlogin.Event) error {
	return o.w.appendLines(len(batch), func(i int) []byte { return batch[i].Encoded })
}

// Sync implements auditlogin.Syncer.
func (o *Output) Sync() error { return o.w.sync() }

// Close implements auditlogin.Output.
func (o *Output) Close() error { return o.w.close() }
