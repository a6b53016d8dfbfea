// Package tailer follows log files: discovery by glob, reading and framing
// lines with exact byte offsets, file identity (device, inode and a
// fingerprint of the first bytes), rotation, and the offset registry. It never
// commits offsets: the pipeline does, from acknowledgements.
//
// Rotation semantics:
//   - rename (logrotate "create"): a harvester follows the file descriptor, not
//     the name, so it reads the renamed file to its end; once the path no
//     longer leads to it and nothing was appended for RotateWait, it closes.
//     The new file at the path is found by the next scan.
//   - copytruncate (the normal case for audit_login.log, which the server never
//     reopens): the file shrinks, or its first bytes change. Lines written after
//     our last read and before the truncation are in the rotated copy: it is
//     found by fingerprint among the files beside it whose name starts with
//     the log's name, and read from our offset to its end. Then the live file
//     is read again from the start, as a new identity.
//   - a file truncated while the agent was stopped is recognized the same way
//     at start (its inode is known with other first bytes).
//   - a half-written last line is never passed on until its newline arrives.
//
// Why not nxadm/tail's line loop: nxadm_traps_test.go pins down, against
// nxadm/tail itself, the four ways it loses or breaks records here — a
// half-written line sent as a line (and its rest skipped by a seek to the
// end), Tell() ahead of the consumer (a checkpoint that skips a line), the
// lines appended just before a rename never read, and a truncation followed
// by growth past the old offset not seen at all (reading resumes mid-record
// in the new content). Wrapping those needs the exact byte offset of every
// line and a content check around every read, which is what this reader is:
// pread from the offset, frame at newlines, and compare the fingerprint
// before and after each read.
package tailer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Input is one configured input: the files it follows and how to parse them.
type Input struct {
	Name       string
	Paths      []string // globs
	NewParser  func() auditlogin.Parser
	StartAtEnd bool // files present at start with no registry entry begin at their end
	// Detect, when set (format auto), chooses each file's parser from its
	// first bytes instead of NewParser; "" means no known format: the file
	// is reported and not followed.
	Detect func(head []byte) (format string, newParser func() auditlogin.Parser)
}

// Config configures a Tailer. Zero values take the defaults noted.
type Config struct {
	Inputs        []Input
	Registry      *Registry
	Logger        *slog.Logger
	ScanInterval  time.Duration // globs are re-evaluated this often (1s)
	PollInterval  time.Duration // an idle harvester checks its file this often (250ms)
	RotateWait    time.Duration // a renamed or deleted file is read until idle this long (5s)
	CloseInactive time.Duration // a harvester idle at EOF this long closes; the scan reopens on growth (5m)
	// MaxOpenFiles bounds the files held open at once (0: the process's
	// RLIMIT_NOFILE less 64 for the registry, outputs and sockets). Past
	// it, files are read in turns: a harvester at the end of its file
	// closes when another file waits for a descriptor.
	MaxOpenFiles    int
	IdleAfter       time.Duration // after this long with nothing new, parsers are told (Line.Idle) (10s)
	FingerprintSize int           // leading bytes that identify a file (1024)
	MaxLine         int           // longer lines are cut and rejected (1 MiB)
	ReadSize        int           // bytes read at a time (64 KiB)
	// Once reads every file to its end and stops (no following).
	Once bool
	// Recycled: the consumer of Run's lines calls Recycle with each slice
	// once it is done with it and its lines' Data; reads then reuse those
	// buffers instead of allocating new ones.
	Recycled bool
}

// Tailer follows every input's files. Create with New, then Run.
type Tailer struct {
	cfg Config
	log *slog.Logger
	out chan<- []auditlogin.Line

	mu       sync.Mutex
	active   map[[2]uint64]bool            // dev/ino of files being read
	parked   map[auditlogin.FileID]parking // where closed harvesters stopped
	finished map[auditlogin.FileID]bool    // rotated away and read to end in this run
	warned   map[string]bool
	// unreadable: files that could not be opened ("path: error"); a
	// one-shot run fails with them.
	unreadable map[string]bool
	// fdWait: a file waited for a descriptor in this scan (MaxOpenFiles
	// reached); harvesters at the end of their file then close. turn
	// rotates the order files are taken in, so that none starves.
	fdWait, fdWaited bool
	turn             int
	// lastAt: the identity found at each followed path by the last scan
	// (scan goroutine only); seen: Registry.SetSeen's times when there is
	// no registry.
	lastAt  map[string]auditlogin.FileID
	seen    map[string]time.Time
	wg      sync.WaitGroup
	started bool

	chunkMu sync.Mutex
	free    []*chunk                    // chunks given back, for the next reads
	lent    map[*auditlogin.Line]*chunk // chunks sent, by their first line
}

// chunk is one read's bytes and the lines framed in them.
type chunk struct {
	buf   []byte
	lines []auditlogin.Line
}

// maxFreeChunks bounds the chunks kept for reuse (each ReadSize bytes and
// its lines), between the tailer and a parser that reads ahead of it.
const maxFreeChunks = 3

// getChunk returns a chunk to read into: a recycled one, or a new one.
func (t *Tailer) getChunk() *chunk {
	if t.cfg.Recycled {
		t.chunkMu.Lock()
		defer t.chunkMu.Unlock()
		if n := len(t.free); n > 0 {
			c := t.free[n-1]
			t.free = t.free[:n-1]
			return c
		}
	}
	return &chunk{}
}

// putChunk keeps c for a later read, when there is room for it.
func (t *Tailer) putChunk(c *chunk) {
	if !t.cfg.Recycled || cap(c.buf) > 2*t.cfg.ReadSize {
		return // a long line's read: not kept
	}
	t.chunkMu.Lock()
	defer t.chunkMu.Unlock()
	if len(t.free) < maxFreeChunks {
		clear(c.lines[:cap(c.lines)]) // no references to parsers and paths
		c.lines = c.lines[:0]
		t.free = append(t.free, c)
	}
}

// lend records that lines (c's) are sent, for Recycle to find c again.
func (t *Tailer) lend(c *chunk, lines []auditlogin.Line) {
	if !t.cfg.Recycled {
		return
	}
	c.lines = lines
	t.chunkMu.Lock()
	t.lent[&lines[0]] = c
	t.chunkMu.Unlock()
}

// Recycle gives back a slice of lines Run sent, once every line of it has
// been parsed (with Config.Recycled): its buffers are reused by later
// reads. Slices Run did not send from a read are ignored.
func (t *Tailer) Recycle(lines []auditlogin.Line) {
	if len(lines) == 0 || !t.cfg.Recycled {
		return
	}
	t.chunkMu.Lock()
	c := t.lent[&lines[0]]
	delete(t.lent, &lines[0])
	t.chunkMu.Unlock()
	if c != nil {
		t.putChunk(c)
	}
}

type parking struct {
	off    int64
	parser auditlogin.Parser
}

// New returns a Tailer for cfg.
func New(cfg Config) *Tailer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ScanInterval, time.Second)
	def(&cfg.PollInterval, 250*time.Millisecond)
	def(&cfg.RotateWait, 5*time.Second)
	def(&cfg.CloseInactive, 5*time.Minute)
	if cfg.MaxOpenFiles <= 0 {
		cfg.MaxOpenFiles = defaultMaxOpenFiles()
	}
	def(&cfg.IdleAfter, 10*time.Second)
	if cfg.FingerprintSize <= 0 {
		cfg.FingerprintSize = DefaultFingerprintSize
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = auditlogin.DefaultMaxLine
	}
	if cfg.ReadSize <= 0 {
		cfg.ReadSize = 64 << 10
	}
	return &Tailer{cfg: cfg, log: cfg.Logger, active: map[[2]uint64]bool{},
		parked: map[auditlogin.FileID]parking{}, finished: map[auditlogin.FileID]bool{}, warned: map[string]bool{},
		unreadable: map[string]bool{}, lent: map[*auditlogin.Line]*chunk{},
		lastAt: map[string]auditlogin.FileID{}, seen: map[string]time.Time{}}
}

// Run follows the inputs, sending lines to out in file order per file, until
// ctx is done — or, with Once, until every file has been read to its end.
// It then waits for its harvesters and closes out.
func (t *Tailer) Run(ctx context.Context, out chan<- []auditlogin.Line) error {
	t.out = out
	defer close(out)
	defer t.wg.Wait()
	first := true
	for {
		t.scan(ctx, first)
		first = false
		if t.cfg.Once {
			t.wg.Wait()
			t.mu.Lock()
			again := t.fdWait // files left for want of descriptors: their turn
			t.mu.Unlock()
			if again && ctx.Err() == nil {
				continue
			}
			t.mu.Lock()
			unreadable := slices.Sorted(maps.Keys(t.unreadable))
			t.mu.Unlock()
			if len(unreadable) > 0 {
				// A one-shot run that could not read a file did not do its job.
				return fmt.Errorf("cannot read %d file(s): %s", len(unreadable), strings.Join(unreadable, "; "))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(t.cfg.ScanInterval):
		}
	}
}

func (t *Tailer) warnOnce(key, msg string, args ...any) {
	t.mu.Lock()
	seen := t.warned[key]
	t.warned[key] = true
	t.mu.Unlock()
	if !seen {
		t.log.Warn(msg, args...)
	}
}

func (t *Tailer) scan(ctx context.Context, first bool) {
	t.mu.Lock()
	t.fdWaited, t.fdWait = t.fdWait, false
	t.turn++
	t.mu.Unlock()
	t.recoverRotated(ctx)
	seen := map[[2]uint64]bool{}
	for i := range t.cfg.Inputs {
		in := &t.cfg.Inputs[i]
		for _, pat := range in.Paths {
			matches, err := filepath.Glob(pat)
			if err != nil {
				t.warnOnce("glob:"+pat, "bad path pattern", "input", in.Name, "pattern", pat, "err", err)
				continue
			}
			if len(matches) == 0 {
				t.warnOnce("nomatch:"+pat, "no file matches yet; waiting for one to appear", "input", in.Name, "pattern", pat)
			}
			if t.fdWaited && len(matches) > 1 {
				// Files are read in turns: start somewhere else each scan.
				k := t.turn % len(matches)
				matches = append(matches[k:len(matches):len(matches)], matches[:k]...)
			}
			for _, path := range matches {
				now := time.Now() // before looking: what was at path by now is known after
				fi, err := os.Stat(path)
				if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
					continue
				}
				dev, ino := devIno(fi)
				di := [2]uint64{dev, ino}
				if seen[di] {
					continue
				}
				seen[di] = true
				t.mu.Lock()
				busy := t.active[di]
				full := !busy && len(t.active) >= t.cfg.MaxOpenFiles
				if full {
					t.fdWait = true
				}
				t.mu.Unlock()
				if full {
					t.warnOnce("fd-limit", "more files to follow than file descriptors allow: reading them in turns (raise LimitNOFILE, or tail.max_open_files)",
						"max_open_files", t.cfg.MaxOpenFiles)
					continue
				}
				if !busy {
					t.consider(ctx, in, path, first, now)
				} else if id, ok := t.lastAt[path]; ok && id.Dev == dev && id.Ino == ino {
					t.setSeen(path, now) // still the file the last scan found there
				}
			}
		}
	}
}

// consider decides where to read a file found by the scan, and starts a
// harvester when there is something to read.
func (t *Tailer) consider(ctx context.Context, in *Input, path string, first bool, now time.Time) {
	f, err := os.Open(path)
	if err != nil {
		t.warnOnce("open:"+path, "cannot open file; trying again at every scan", "file", path, "err", err)
		t.mu.Lock()
		t.unreadable[path+": "+err.Error()] = true
		t.mu.Unlock()
		return
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		f.Close()
		return
	}
	size := fi.Size()
	dev, ino := devIno(fi)
	newParser, ok := t.parserFor(in, f, path)
	if !ok {
		f.Close()
		return
	}
	fps := &fpCache{f: f, m: map[int]string{}}
	id, off, parser, known := t.resolve(fps, dev, ino)
	if !known {
		// A copy or a move of a file we read (same first bytes, another inode).
		if o, ok := t.byFingerprint(fps, dev, ino); ok {
			off, known = o, true
		}
		if id, _, ok, err = identify(f, t.cfg.FingerprintSize); err != nil || !ok {
			f.Close()
			return
		}
	}
	if last, ok := t.lastAt[path]; !ok || last != id {
		// Another file at path than the last scan found (or the first
		// scan): files that were at path in between and were rotated
		// away before a scan saw them are beside it. Read them first.
		if since, ok := t.seenAt(path); ok {
			t.recoverUnseen(ctx, in, path, since.Add(-unseenSlack))
		}
	}
	// Whatever was at path by now is known once this file is.
	defer func() {
		t.lastAt[path] = id
		t.setSeen(path, now)
	}()
	if !known && in.StartAtEnd && first {
		off = lastLineEnd(f, size)
		t.log.Info("new file: starting at its end", "file", path, "offset", off)
	}
	switch {
	case off < 0:
		// Only a damaged or hand-edited registry holds one.
		t.log.Warn("the registry's offset for this file is negative (damaged registry?): reading it from the start", "file", path, "offset", off, "size", size)
		off = 0
	case off > size:
		t.log.Warn("file is shorter than its committed offset: reading it from the start", "file", path, "offset", off, "size", size)
		off = 0
	}
	// Nothing to read yet: remember where to start; the scan comes back on growth.
	if off == size {
		if !known {
			t.register(id, path, off)
		}
		t.mu.Lock()
		t.parked[id] = parking{off: off, parser: parser}
		t.mu.Unlock()
		f.Close()
		return
	}
	if !known {
		t.register(id, path, off)
	}
	if parser == nil {
		parser = newParser()
	}
	t.start(ctx, &harvester{t: t, in: in, f: f, path: path, id: id, identified: true, off: off, parser: parser, newParser: newParser})
}

// parserFor returns the parser maker for a file of in: NewParser, or the
// detected format's (ok false: no known format, not followed).
func (t *Tailer) parserFor(in *Input, f *os.File, path string) (func() auditlogin.Parser, bool) {
	if in.Detect == nil {
		return in.NewParser, true
	}
	head := make([]byte, 64<<10)
	n, _ := f.ReadAt(head, 0)
	format, np := in.Detect(head[:n])
	if np == nil {
		t.warnOnce("format:"+path, "the file matches no known log format: not followed", "file", path, "input", in.Name)
		return nil, false
	}
	t.mu.Lock()
	said := t.warned["detected:"+path+":"+format]
	t.warned["detected:"+path+":"+format] = true
	t.mu.Unlock()
	if !said {
		t.log.Info("log format detected", "file", path, "format", format)
	}
	return np, true
}

func (t *Tailer) register(id auditlogin.FileID, path string, off int64) {
	if t.cfg.Registry == nil {
		return
	}
	if err := t.cfg.Registry.Register(id, path, off); err != nil {
		t.log.Error("cannot write the registry", "file", path, "err", err)
	}
}

// fpCache fingerprints one open file at several lengths.
type fpCache struct {
	f *os.File
	m map[int]string
}

func (c *fpCache) get(n int) string {
	if fp, ok := c.m[n]; ok {
		return fp
	}
	fp, err := fingerprint(c.f, n)
	if err != nil {
		fp = ""
	}
	c.m[n] = fp
	return fp
}

// resolve finds the identity under which the file (dev/ino, open in fps) was
// read before: a parked or registry entry for this inode whose fingerprint
// matches the file's first FPLen bytes (identities keep the fingerprint length
// they were first seen with, so a file that grew is still recognized).
func (t *Tailer) resolve(fps *fpCache, dev, ino uint64) (id auditlogin.FileID, off int64, parser auditlogin.Parser, found bool) {
	t.mu.Lock()
	for pid, p := range t.parked {
		if pid.Dev == dev && pid.Ino == ino && fps.get(pid.FPLen) == pid.FP {
			id, off, parser, found = pid, p.off, p.parser, true
			delete(t.parked, pid)
			break
		}
	}
	t.mu.Unlock()
	if found || t.cfg.Registry == nil {
		return
	}
	for rid, c := range t.cfg.Registry.Entries() {
		if rid.Dev != dev || rid.Ino != ino {
			continue
		}
		if fps.get(rid.FPLen) == rid.FP && (!found || c.Offset > off) {
			id, off, found = rid, c.Offset, true
		}
	}
	return
}

// recoverRotated finds files that were rotated away while nobody read them
// (the agent was stopped, or its output was down and a rotation was quick):
// for each registry entry whose recorded path matches an input but now holds
// another file, it looks beside that path for the same content (renamed: same
// inode; copied: same first bytes) and reads it from the committed offset to
// its end. Then it reads, from their start and oldest first, the files beside
// it that are newer than that one and were never seen (rotated away before
// the agent could look at them). All of it before the live file is read.
func (t *Tailer) recoverRotated(ctx context.Context) {
	for rid, c := range t.registryEntries() {
		if c.Rotated || ctx.Err() != nil {
			continue
		}
		in := t.inputFor(c.Path)
		if in == nil {
			continue
		}
		t.mu.Lock()
		skip := t.active[[2]uint64{rid.Dev, rid.Ino}] || t.finished[rid]
		off := c.Offset
		if p, ok := t.parked[rid]; ok && p.off > off {
			off = p.off
		}
		t.mu.Unlock()
		if skip || t.isAt(c.Path, rid) {
			continue // being read, done in this run, or still where it was
		}
		t.mu.Lock()
		t.finished[rid] = true // once per run; the registry marks it when committed
		t.mu.Unlock()
		since := c.Updated
		if found, mtime := t.recoverGap(ctx, in, rid, off, c.Path, nil); found {
			since = mtime
		} else {
			t.log.Warn("a followed file was rotated or removed while it was not being read, and no file beside it holds its content: lines after the committed offset may be lost",
				"file", c.Path, "offset", off)
		}
		t.recoverUnseen(ctx, in, c.Path, since)
	}
}

// recoverUnseen reads the files beside livePath (its rotated names) modified
// after since that the registry does not know: rotated away before the agent
// saw them.
func (t *Tailer) recoverUnseen(ctx context.Context, in *Input, livePath string, since time.Time) {
	dir, base := filepath.Dir(livePath), filepath.Base(livePath)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type cand struct {
		path  string
		mtime time.Time
	}
	var cands []cand
	for _, de := range ents {
		name := de.Name()
		if name == base || !strings.HasPrefix(name, base) || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil || fi.ModTime().Before(since) || fi.Size() == 0 { // equal counts: file times are coarse (jiffies)
			continue
		}
		cands = append(cands, cand{filepath.Join(dir, name), fi.ModTime()})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].mtime.Before(cands[j].mtime) })
	for _, c := range cands {
		f, err := os.Open(c.path)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		dev, ino := devIno(fi)
		fps := &fpCache{f: f, m: map[int]string{}}
		// Known, or compressed (by logrotate): not an unseen rotated file.
		if t.knows(fps, dev, ino) || compressed(f) {
			f.Close()
			continue
		}
		if _, ok := t.byFingerprint(fps, dev, ino); ok {
			f.Close()
			continue
		}
		id, _, ok, err := identify(f, t.cfg.FingerprintSize)
		if err != nil || !ok {
			f.Close()
			continue
		}
		np, ok := t.parserFor(in, f, c.path)
		if !ok {
			f.Close()
			continue
		}
		t.log.Info("reading a rotated file that was never seen (rotated away while not being read)", "file", c.path)
		t.register(id, livePath, 0) // under the followed path: a restart finds it among that path's rotated files
		t.runInline(ctx, &harvester{t: t, in: in, f: f, path: c.path, id: id, identified: true, parser: np(), newParser: np, rotated: true})
	}
}

// unseenSlack is subtracted from a path's seen time before comparing it with
// file modification times, which the kernel takes from a coarse clock.
const unseenSlack = 2 * time.Second

// seenAt and setSeen keep a path's seen time in the registry (or in memory
// when there is none).
func (t *Tailer) seenAt(path string) (time.Time, bool) {
	if t.cfg.Registry != nil {
		return t.cfg.Registry.Seen(path)
	}
	ts, ok := t.seen[path]
	return ts, ok
}

func (t *Tailer) setSeen(path string, ts time.Time) {
	if t.cfg.Registry != nil {
		t.cfg.Registry.SetSeen(path, ts)
	} else {
		t.seen[path] = ts
	}
}

// knows reports whether the file (dev/ino, open in fps) was read before, or
// is being read: a parked or registry entry for its inode and first bytes.
func (t *Tailer) knows(fps *fpCache, dev, ino uint64) bool {
	t.mu.Lock()
	busy := t.active[[2]uint64{dev, ino}]
	var parked []auditlogin.FileID
	for pid := range t.parked {
		if pid.Dev == dev && pid.Ino == ino {
			parked = append(parked, pid)
		}
	}
	t.mu.Unlock()
	if busy {
		return true
	}
	for _, pid := range parked {
		if fps.get(pid.FPLen) == pid.FP {
			return true
		}
	}
	for rid := range t.registryEntries() {
		if rid.Dev == dev && rid.Ino == ino && fps.get(rid.FPLen) == rid.FP {
			return true
		}
	}
	return false
}

// compressed reports whether f starts like a gzip, bzip2, xz or zstd file
// (a rotated file compressed by logrotate: not a log to read).
func compressed(f *os.File) bool {
	head := make([]byte, 6)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	for _, magic := range [][]byte{{0x1f, 0x8b}, []byte("BZh"), {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}} {
		if bytes.HasPrefix(head, magic) {
			return true
		}
	}
	return false
}

// inputFor returns the input one of whose globs matches path.
func (t *Tailer) inputFor(path string) *Input {
	for i := range t.cfg.Inputs {
		for _, g := range t.cfg.Inputs[i].Paths {
			if ok, _ := filepath.Match(g, path); ok {
				return &t.cfg.Inputs[i]
			}
		}
	}
	return nil
}

// isAt reports whether the file at path is id (same inode, same first bytes).
func (t *Tailer) isAt(path string, id auditlogin.FileID) bool { return fileIs(path, id) }

func (t *Tailer) registryEntries() map[auditlogin.FileID]Known {
	if t.cfg.Registry == nil {
		return nil
	}
	return t.cfg.Registry.Entries()
}

// byFingerprint finds a registry entry for another inode whose first bytes
// are this file's: it is a copy or a move of that file, and resumes at its
// offset.
func (t *Tailer) byFingerprint(fps *fpCache, dev, ino uint64) (int64, bool) {
	best, found := int64(0), false
	for oid, c := range t.registryEntries() {
		if oid.Dev == dev && oid.Ino == ino {
			continue
		}
		if fps.get(oid.FPLen) == oid.FP && (!found || c.Offset > best) {
			best, found = c.Offset, true
		}
	}
	return best, found
}

// recoverGap looks beside livePath for the rotated copy of the file old (its
// first bytes; a renamed file keeps its inode too) and reads it, here and to
// its end, from offset from, under old's identity: offsets go on where old's
// stopped, so a crash in between loses nothing. parser continues old's parser
// (a record may have begun before the rotation); nil makes a new one. It
// returns whether a copy was found, and its modification time.
func (t *Tailer) recoverGap(ctx context.Context, in *Input, old auditlogin.FileID, from int64, livePath string, parser auditlogin.Parser) (bool, time.Time) {
	dir, base := filepath.Dir(livePath), filepath.Base(livePath)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, time.Time{}
	}
	for _, de := range ents {
		name := de.Name()
		if name == base || !strings.HasPrefix(name, base) || !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, name)
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		fp, err := fingerprint(f, old.FPLen)
		fi, serr := f.Stat()
		if err != nil || serr != nil || fp != old.FP {
			f.Close()
			continue
		}
		cdev, cino := devIno(fi)
		t.mu.Lock()
		busy := t.active[[2]uint64{cdev, cino}]
		t.mu.Unlock()
		if busy { // already being read (a glob matches the rotated files too)
			f.Close()
			return true, fi.ModTime()
		}
		t.log.Info("reading the rest of a rotated file from its copy", "file", p, "offset", from, "size", fi.Size())
		np, ok := t.parserFor(in, f, p)
		if !ok {
			f.Close()
			return true, fi.ModTime()
		}
		if parser == nil {
			parser = np()
		}
		h := &harvester{t: t, in: in, f: f, path: p, id: old, identified: true, off: from, parser: parser, newParser: np, rotated: true}
		t.runInline(ctx, h)
		return true, fi.ModTime()
	}
	return false, time.Time{}
}

// runInline reads a rotated file to its end in the calling goroutine, so
// that its lines are passed on before the caller goes on with newer ones.
func (t *Tailer) runInline(ctx context.Context, h *harvester) {
	fi, err := h.f.Stat()
	if err != nil {
		h.f.Close()
		return
	}
	dev, ino := devIno(fi)
	t.mu.Lock()
	h.di = [2]uint64{dev, ino}
	t.active[h.di] = true
	t.mu.Unlock()
	h.run(ctx)
}

// markRotated records that id was read to end after a rotation: not looked
// for again in this run, and marked in the registry once committed to end.
func (t *Tailer) markRotated(id auditlogin.FileID, end int64) {
	t.mu.Lock()
	t.finished[id] = true
	t.mu.Unlock()
	if t.cfg.Registry != nil {
		t.cfg.Registry.MarkRotated(id, end)
	}
}

func (t *Tailer) start(ctx context.Context, h *harvester) {
	t.mu.Lock()
	h.di = [2]uint64{h.id.Dev, h.id.Ino}
	t.active[h.di] = true
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		h.run(ctx)
	}()
}

// lastLineEnd returns the offset just past the last newline before size.
func lastLineEnd(f *os.File, size int64) int64 {
	const window = 64 << 10
	from := size - window
	if from < 0 {
		from = 0
	}
	buf := make([]byte, size-from)
	n, _ := f.ReadAt(buf, from)
	if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
		return from + int64(i) + 1
	}
	if from == 0 {
		return 0
	}
	return size
}

// harvester reads one file (one identity at a time) from its offset.
type harvester struct {
	t      *Tailer
	in     *Input
	f      *os.File
	di     [2]uint64
	path   string
	id     auditlogin.FileID
	parser auditlogin.Parser
	// newParser makes the parser for the file's next identity (after a
	// copytruncate): the input's, or the detected format's.
	newParser func() auditlogin.Parser

	identified bool  // id is known (false after a truncation, until bytes arrive)
	off        int64 // read offset: just past the last line passed on
	lastSize   int64
	rotated    bool // a rotated copy: read to its end, then close
	skip       *longLine

	// head holds the first bytes of the file that hashed to id.FP last
	// time (headFor: that FP): the check around every read compares bytes
	// and hashes only when they differ.
	head, headBuf []byte
	headFor       string
}

// sameStart reports whether the file still starts with the bytes its
// identity was taken from (fingerprint(h.f, h.id.FPLen) == h.id.FP). It runs
// before and after every read: it compares the bytes with those that
// matched last time, and hashes only when they differ.
func (h *harvester) sameStart() (bool, error) {
	n := h.id.FPLen
	if cap(h.headBuf) < n {
		h.headBuf = make([]byte, n)
	}
	buf := h.headBuf[:n]
	if _, err := h.f.ReadAt(buf, 0); err != nil {
		if err == io.EOF {
			return h.id.FP == "", nil
		}
		return false, err
	}
	if h.headFor == h.id.FP && h.head != nil && bytes.Equal(buf, h.head) {
		return true, nil
	}
	if fingerprintOf(buf) != h.id.FP {
		return false, nil
	}
	h.head, h.headFor = append(h.head[:0], buf...), h.id.FP
	return true, nil
}

// longLine is a line longer than MaxLine being skipped to its newline.
type longLine struct {
	start int64
	kept  []byte
}

func (h *harvester) run(ctx context.Context) {
	t := h.t
	// Where it stopped is remembered, so that a later scan resumes there and
	// not at the committed offset, which may still lag behind lines in flight.
	park := true
	defer func() {
		h.f.Close()
		t.mu.Lock()
		delete(t.active, h.di)
		if park && h.identified && h.skip == nil {
			t.parked[h.id] = parking{off: h.off, parser: h.parser}
		}
		t.mu.Unlock()
	}()
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	idleSince := time.Now()
	idleSent := true // nothing read yet: nothing to tell
	for {
		n, err := h.readOnce(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.log.Error("reading file; will retry it from the committed offset on the next scan", "file", h.path, "offset", h.off, "err", err)
				park = false // restart from the registry, not from here
			}
			return
		}
		if n > 0 {
			idleSince, idleSent = time.Now(), false
			continue
		}
		if h.rotated {
			h.endOfFile(ctx)
			h.parser = nil // ended: a later reader starts a new one
			t.log.Info("finished reading rotated file", "file", h.path, "offset", h.off)
			t.markRotated(h.id, h.off)
			return
		}
		if t.cfg.Once || t.fdWanted() {
			return // at the end: give the descriptor to a file that waits for one
		}
		idle := time.Since(idleSince)
		if !idleSent && idle >= t.cfg.IdleAfter {
			idleSent = true
			l := auditlogin.Line{Idle: true, Parser: h.parser, Pos: auditlogin.Position{File: h.id, Path: h.path, Offset: h.off, End: h.off}}
			select {
			case t.out <- []auditlogin.Line{l}:
			case <-ctx.Done():
				return
			}
		}
		if idle >= t.cfg.RotateWait && h.gone() {
			h.endOfFile(ctx)
			t.log.Info("file was rotated away or deleted and is read to its end; closing it", "file", h.path, "offset", h.off)
			h.parser = nil
			t.markRotated(h.id, h.off)
			return
		}
		if idle >= t.cfg.CloseInactive {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// fdWanted reports whether a file waits for a descriptor.
func (t *Tailer) fdWanted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fdWait || t.fdWaited
}

// defaultMaxOpenFiles is RLIMIT_NOFILE (which Go raises to the hard limit
// at start) less 64 descriptors for everything else, at least 8.
func defaultMaxOpenFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<20 {
		return 1 << 16
	}
	return max(int(rl.Cur)-64, 8)
}

// gone reports whether the path no longer leads to this file.
func (h *harvester) gone() bool {
	fi, err := os.Stat(h.path)
	if err != nil {
		return true
	}
	dev, ino := devIno(fi)
	return [2]uint64{dev, ino} != h.di
}

// endOfFile tells the pipeline that this identity's lines are complete, so a
// record left pending by its parser is rejected rather than kept forever.
func (h *harvester) endOfFile(ctx context.Context) {
	l := auditlogin.Line{EndOfFile: true, Parser: h.parser,
		Pos: auditlogin.Position{File: h.id, Path: h.path, Offset: h.off, End: h.off}}
	select {
	case h.t.out <- []auditlogin.Line{l}:
	case <-ctx.Done():
	}
}

// readOnce reads what the file holds beyond the offset and passes on its
// complete lines. It returns the number of bytes consumed (0 at EOF).
func (h *harvester) readOnce(ctx context.Context) (int64, error) {
	fi, err := h.f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if !h.identified {
		if size == 0 {
			return 0, nil
		}
		id, _, ok, err := identify(h.f, h.t.cfg.FingerprintSize)
		if err != nil || !ok {
			return 0, err
		}
		h.id, h.identified, h.off = id, true, 0
		h.t.register(id, h.path, 0)
	}
	if size < h.off {
		h.truncated(ctx, "file is shorter than the read offset")
		return 1, nil
	}
	// Same size or larger, but other first bytes: truncated and rewritten
	// between two looks (copytruncate followed by fast writes). At the
	// same size too: rewritten to exactly the length read, nothing else
	// would tell, and the new lines would wait for the next write.
	if same, err := h.sameStart(); err != nil {
		return 0, err
	} else if !same {
		h.truncated(ctx, "file's first bytes changed")
		return 1, nil
	}
	h.lastSize = size
	if size == h.off {
		return 0, nil
	}

	want := int64(h.t.cfg.ReadSize)
	c := h.t.getChunk()
	var buf []byte
	for {
		n := size - h.off
		if n > want {
			n = want
		}
		if int64(cap(c.buf)) < n {
			c.buf = make([]byte, n)
		}
		buf = c.buf[:n]
		got, err := h.f.ReadAt(buf, h.off)
		if err != nil && err != io.EOF {
			h.t.putChunk(c)
			return 0, err
		}
		buf = buf[:got]
		// A chunk with no newline that filled the read: read more at once,
		// up to the line limit (beyond it the line is cut anyway).
		if h.skip == nil && int64(got) == want && bytes.IndexByte(buf, '\n') < 0 && want <= int64(h.t.cfg.MaxLine) {
			want *= 2
			continue
		}
		break
	}
	// Check the first bytes again: if the file was truncated and rewritten
	// while we read, some of buf is new content at old offsets. Drop it all;
	// the old content's rest is in the rotated copy, read from h.off.
	if same, err := h.sameStart(); err != nil {
		return 0, err
	} else if !same {
		h.t.putChunk(c)
		h.truncated(ctx, "file's first bytes changed during a read")
		return 1, nil
	}
	lines, consumed := h.frame(buf, c.lines[:0])
	h.off += consumed
	if len(lines) == 0 {
		h.t.putChunk(c)
		return consumed, nil
	}
	h.t.lend(c, lines)
	select {
	case h.t.out <- lines:
	case <-ctx.Done():
		h.t.Recycle(lines) // not sent
		return 0, ctx.Err()
	}
	return consumed, nil
}

// frame splits buf (which starts at h.off) into complete lines, appended
// to lines.
func (h *harvester) frame(buf []byte, lines []auditlogin.Line) ([]auditlogin.Line, int64) {
	maxLine := h.t.cfg.MaxLine
	// Sized once: growing it line by line copied each Line (about 100
	// bytes) twice on average, a fifth of the agent's allocations.
	if n := bytes.Count(buf, []byte{'\n'}) + 1; cap(lines) < n {
		lines = make([]auditlogin.Line, 0, n)
	}
	pos := h.off
	data := buf
	mk := func(d []byte, start, end int64, truncated bool) auditlogin.Line {
		return auditlogin.Line{Data: d, Truncated: truncated, Parser: h.parser,
			Pos: auditlogin.Position{File: h.id, Path: h.path, Offset: start, End: end}}
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if h.skip != nil {
			if i < 0 {
				pos += int64(len(data))
				break
			}
			lines = append(lines, mk(h.skip.kept, h.skip.start, pos+int64(i)+1, true))
			h.skip = nil
		} else if i < 0 {
			if len(data) > maxLine {
				h.skip = &longLine{start: pos, kept: bytes.Clone(data[:maxLine])}
				pos += int64(len(data))
			}
			break // a partial line waits for its newline
		} else if i > maxLine {
			lines = append(lines, mk(data[:maxLine], pos, pos+int64(i)+1, true))
		} else {
			lines = append(lines, mk(data[:i], pos, pos+int64(i)+1, false))
		}
		pos += int64(i) + 1
		data = data[i+1:]
	}
	return lines, pos - h.off
}

// truncated handles copytruncate: the rest of the old content is read from
// the rotated copy, then the live file from its start as a new identity.
func (h *harvester) truncated(ctx context.Context, why string) {
	t := h.t
	old, from := h.id, h.off
	t.log.Info("file truncated (copytruncate); reading it again from the start", "file", h.path, "offset", from, "reason", why)
	if found, _ := t.recoverGap(ctx, h.in, old, from, h.path, h.parser); !found {
		if h.lastSize > from {
			t.log.Warn("lines written just before the truncation were not read and no rotated copy holds them",
				"file", h.path, "offset", from, "bytes", h.lastSize-from)
		}
		h.endOfFile(ctx)
		t.markRotated(old, from)
	} // else the copy's reader marked it, at the copy's end
	h.parser = h.newParser()
	h.identified, h.off, h.skip, h.lastSize = false, 0, nil, 0
}

// String describes the harvester for logs.
func (h *harvester) String() string { return fmt.Sprintf("%s@%d", h.path, h.off) }
