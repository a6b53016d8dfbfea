// Package file is the NDJSON file output and the dead-letter file: one JSON
// object per line, appended through a buffer, flushed to the OS at the end of
// every batch, fsynced before every registry commit (Sync), and rotated by
// size (path.1, path.2, ... up to MaxFiles).
package file

import (
	"bufio"
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
}

// writer is an append-only NDJSON file with size-based rotation.
type writer struct {
	cfg  Config
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
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
	f, err := os.OpenFile(w.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, w.cfg.Perm)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, fi.Size()
	w.w = bufio.NewWriterSize(f, 256<<10)
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
	o.w.mu.Lock()
	defer o.w.mu.Unlock()
	for _, ev := range batch {
		if err := o.w.writeLine(ev.Encoded); err != nil {
			return fmt.Errorf("writing %s: %w", o.w.cfg.Path, err)
		}
	}
	if err := o.w.w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", o.w.cfg.Path, err)
	}
	return nil
}

// Sync implements auditlogin.Syncer.
func (o *Output) Sync() error { return o.w.sync() }

// Close implements auditlogin.Output.
func (o *Output) Close() error { return o.w.close() }
