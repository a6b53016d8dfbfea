package tailer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Registry is the offset registry: for each file identity, the offset below
// which every record has been delivered by every output. It implements
// auditlogin.Checkpoint; only the pipeline's committer advances it. The file
// is replaced atomically (temp file, fsync, rename, fsync of the directory),
// so a crash leaves either the old or the new registry, never a torn one.
type Registry struct {
	path       string
	cleanAfter time.Duration
	readOnly   bool

	mu      sync.Mutex
	entries map[auditlogin.FileID]*entry
	// rotated holds files read to their end after a rotation: the flag is
	// set once their committed offset reaches that end, not before, so a
	// crash with lines still in flight recovers them.
	rotated map[auditlogin.FileID]int64
	// seen: for each followed path, a time at which every file that had
	// been at that path was known (registered); a file beside the path
	// modified since then that is not known was rotated away unseen.
	seen map[string]time.Time
}

type entry struct {
	Path    string    `json:"path"`
	Dev     uint64    `json:"dev"`
	Ino     uint64    `json:"ino"`
	FPLen   int       `json:"fp_len"`
	FP      string    `json:"fp"`
	Offset  int64     `json:"offset"`
	Updated time.Time `json:"updated"`
	// Rotated: the file was truncated under this identity and its rest read
	// from the rotated copy; it is not recovered again.
	Rotated bool `json:"rotated,omitempty"`
}

func (e *entry) id() auditlogin.FileID {
	return auditlogin.FileID{Dev: e.Dev, Ino: e.Ino, FPLen: e.FPLen, FP: e.FP}
}

type registryFile struct {
	Version int      `json:"version"`
	Files   []*entry `json:"files"`
	// Seen is written by agents since 2026-12 (older ones ignore it).
	Seen map[string]time.Time `json:"seen,omitempty"`
}

// OpenRegistry loads the registry at path (a missing file is an empty
// registry). Entries whose file is gone are dropped cleanAfter after their
// last update.
func OpenRegistry(path string, cleanAfter time.Duration) (*Registry, error) {
	r := &Registry{path: path, cleanAfter: cleanAfter, entries: map[auditlogin.FileID]*entry{}, rotated: map[auditlogin.FileID]int64{}, seen: map[string]time.Time{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry: %w", err)
	}
	var rf registryFile
	if err := json.Unmarshal(data, &rf); err != nil {
		return nil, fmt.Errorf("registry %s is not valid (%v): move it away to start over, which re-reads every file", path, err)
	}
	if rf.Version != 1 {
		return nil, fmt.Errorf("registry %s has version %d, this agent reads version 1", path, rf.Version)
	}
	for _, e := range rf.Files {
		r.entries[e.id()] = e
	}
	for p, ts := range rf.Seen {
		r.seen[p] = ts
	}
	return r, nil
}

// Seen returns the time recorded for path by SetSeen (false: none).
func (r *Registry) Seen(path string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts, ok := r.seen[path]
	return ts, ok
}

// SetSeen records that every file that had been at path by ts is known. It
// is kept in memory and written with the next write: a crash leaves an
// older time, which only makes a restart look at more files.
func (r *Registry) SetSeen(path string, ts time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts.After(r.seen[path]) {
		r.seen[path] = ts.UTC()
	}
}

// ReadOnly makes Commit and Register keep changes in memory only (a dry run
// commits nothing).
func (r *Registry) ReadOnly() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readOnly = true
}

// Lag is how far the committed offset of a followed file is behind its size.
type Lag struct {
	Path      string
	Size      int64
	Committed int64
}

// Lag returns, for each file still at its recorded path (not rotated away),
// its size and committed offset.
func (r *Registry) Lag() []Lag {
	r.mu.Lock()
	var ents []entry
	for _, e := range r.entries {
		if !e.Rotated {
			ents = append(ents, *e)
		}
	}
	r.mu.Unlock()
	var out []Lag
	for i := range ents {
		e := &ents[i]
		if !stillThere(e) {
			continue
		}
		fi, err := os.Stat(e.Path)
		if err != nil {
			continue
		}
		out = append(out, Lag{Path: e.Path, Size: fi.Size(), Committed: e.Offset})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Path returns the registry file's path.
func (r *Registry) Path() string { return r.path }

// Get returns the committed offset of id.
func (r *Registry) Get(id auditlogin.FileID) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[id]; ok {
		return e.Offset, true
	}
	return 0, false
}

// Known is an entry as the tailer sees it.
type Known struct {
	Path    string
	Offset  int64
	Rotated bool
	Updated time.Time
}

// Entries returns a copy of every entry.
func (r *Registry) Entries() map[auditlogin.FileID]Known {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[auditlogin.FileID]Known, len(r.entries))
	for id, e := range r.entries {
		out[id] = Known{Path: e.Path, Offset: e.Offset, Rotated: e.Rotated, Updated: e.Updated}
	}
	return out
}

// Register records a file identity the tailer starts reading at offset,
// durably, before anything of it is shipped: if the file is then rotated away
// while the agent is down, before any commit, a restart still knows to look
// for its rotated copy. An identity already known is left as it is.
func (r *Registry) Register(id auditlogin.FileID, path string, offset int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[id]; ok {
		return nil
	}
	e := &entry{Path: path, Dev: id.Dev, Ino: id.Ino, FPLen: id.FPLen, FP: id.FP, Offset: offset, Updated: time.Now().UTC()}
	r.entries[id] = e
	r.applyRotated(id, e)
	return r.write()
}

// MarkRotated records that id's file was rotated away and read to end: once
// its committed offset reaches end, it is marked rotated (written with that
// commit) and no longer looked for.
func (r *Registry) MarkRotated(id auditlogin.FileID, end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotated[id] = end
	if e := r.entries[id]; e != nil {
		r.applyRotated(id, e)
	}
}

func (r *Registry) applyRotated(id auditlogin.FileID, e *entry) {
	if end, ok := r.rotated[id]; ok && e.Offset >= end {
		e.Rotated = true
		delete(r.rotated, id)
	}
}

// Lookup returns the identity and committed offset under which the file now
// at path was read: the entry for its inode whose fingerprint matches its
// first bytes.
func (r *Registry) Lookup(path string) (auditlogin.FileID, int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return auditlogin.FileID{}, 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return auditlogin.FileID{}, 0, false
	}
	dev, ino := devIno(fi)
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.entries {
		if e.Dev == dev && e.Ino == ino {
			if fp, err := fingerprint(f, e.FPLen); err == nil && fp == e.FP {
				return id, e.Offset, true
			}
		}
	}
	return auditlogin.FileID{}, 0, false
}

// Commit implements auditlogin.Checkpoint.
func (r *Registry) Commit(offsets map[auditlogin.FileID]auditlogin.Committed) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now().UTC()
	for id, c := range offsets {
		e := r.entries[id]
		if e == nil {
			e = &entry{Dev: id.Dev, Ino: id.Ino, FPLen: id.FPLen, FP: id.FP, Path: c.Path}
			r.entries[id] = e
		}
		// The path stays the one the file was registered under (the path
		// an input follows): records read from a rotated copy carry the
		// copy's path, and recovery after a crash looks for the entry by
		// its input's globs.
		e.Offset, e.Updated = c.Offset, now
		r.applyRotated(id, e)
	}
	r.prune(now)
	return r.write()
}

// prune drops entries not updated for cleanAfter whose file is no longer at
// its recorded path (a live but idle file keeps its entry forever).
func (r *Registry) prune(now time.Time) {
	if r.cleanAfter <= 0 {
		return
	}
	for id, e := range r.entries {
		if now.Sub(e.Updated) < r.cleanAfter {
			continue
		}
		if stillThere(e) {
			continue
		}
		delete(r.entries, id)
	}
	// A path no entry names any more (its files gone for cleanAfter, such
	// as a dated name) keeps no seen time either.
	if len(r.seen) == 0 {
		return
	}
	named := make(map[string]bool, len(r.entries))
	for _, e := range r.entries {
		named[e.Path] = true
	}
	for path := range r.seen {
		if !named[path] {
			delete(r.seen, path)
		}
	}
}

// stillThere reports whether e's file is still at its path with its content.
func stillThere(e *entry) bool { return fileIs(e.Path, e.id()) }

// fileIs reports whether the file at path is id: same device and inode, same
// first bytes.
func fileIs(path string, id auditlogin.FileID) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	if dev, ino := devIno(fi); dev != id.Dev || ino != id.Ino {
		return false
	}
	fp, err := fingerprint(f, id.FPLen)
	return err == nil && fp == id.FP
}

func (r *Registry) write() error {
	if r.readOnly {
		return nil
	}
	rf := registryFile{Version: 1, Files: make([]*entry, 0, len(r.entries)), Seen: r.seen}
	for _, e := range r.entries {
		rf.Files = append(rf.Files, e)
	}
	sort.Slice(rf.Files, func(i, j int) bool {
		a, b := rf.Files[i], rf.Files[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Updated.Before(b.Updated)
	})
	data, err := json.MarshalIndent(rf, "", " ")
	if err != nil {
		return err
	}
	return auditlogin.WriteFileAtomic(r.path, append(data, '\n'), 0o640)
}
