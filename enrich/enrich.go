// Package enrich tags events in the pipeline with what a DBA looks for:
// failed logins, connections without credentials (port probes), root and
// remote root logins, brute force (many failures from one source or for one
// user within a window) and new sources (an account seen from an address for
// the first time on a server; the seen-set is persisted and bounded). It
// runs on the pipeline's single parse goroutine: no locking on the hot path.
package enrich

import (
	"bufio"
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Tags this package sets.
const (
	TagFailed        = "failed"
	TagNoCredentials = "no_credentials"
	TagRoot          = "root"
	TagRemoteRoot    = "remote_root"
	TagBruteForce    = "brute_force"
	TagNewSource     = "new_source"
)

// Config configures the rules. Zero values take the defaults noted.
type Config struct {
	BruteForceThreshold int           // failures from one ip, or for one user, that make brute force (5)
	BruteForceWindow    time.Duration // within this window of event time (5m)
	MaxTracked          int           // ips/users tracked for brute force at once (100000)

	NewSource bool   // tag new_source
	SeenPath  string // where the seen-set is kept ("" keeps it in memory only)
	MaxSeen   int    // (server, account, source) entries kept, least recently seen dropped first (100000)
}

// Enricher applies the rules. Enrich, Snapshot and Flush are called from
// one goroutine at a time (the agent calls Snapshot from the pipeline's
// Tick, on Enrich's goroutine, and Flush once the pipeline has stopped): no
// lock on the hot path (an uncontended mutex per event was two thirds of
// Enrich's own time, its atomic instructions waiting on the seen-set's
// cache misses). The write Snapshot returns runs on any goroutine.
//
// Both maps are keyed by a 64-bit hash of their key, not by the key string:
// no string is built per event, and the maps hold no pointers for the
// garbage collector to scan (with 100,000 sources, string keys made
// enrichment 16 % of the agent's CPU, most of it cache misses and GC). A
// collision can only cost a tag (a source taken as already seen, or two
// keys' failures counted together): for the seen-set, with 100,000 entries,
// about one chance in 3·10⁹; the hashes are seeded (fails: per process;
// seen: a random salt kept in its file) so that a client cannot aim at one.
type Enricher struct {
	cfg Config

	fails failTable
	seed  maphash.Seed
	h     maphash.Hash

	salt      uint64
	seen      *seenSet // seenHash(server, account, source) → last seen (unix seconds)
	seenDirty bool
}

// failTable holds, for each key (a hash of ("ip"|"user", server,
// source|user)), the times (unix nanoseconds) of its last failures, oldest
// first, at most threshold of them: the key maps to a window, threshold
// slots of one slice. Nothing in it is a pointer: the garbage collector
// never scans it (it was a *window and a slice per key: two objects a key
// to allocate and scan).
type failTable struct {
	index map[uint64]int32 // key → window
	times []int64          // window w's times: times[w*threshold:][:count[w]]
	count []int32
	free  []int32 // windows of dropped keys, for new ones
	// pruneAt: the number of keys at which keys with no failure within the
	// window are dropped next (twice what was left by the last pruning, so
	// its cost per new key is constant): the table holds about what the
	// window holds, not MaxTracked keys of long-past failures.
	pruneAt int
}

func (f *failTable) len() int { return len(f.index) }

// New returns an Enricher, loading the seen-set from cfg.SeenPath.
func New(cfg Config) (*Enricher, error) {
	if cfg.BruteForceThreshold <= 0 {
		cfg.BruteForceThreshold = 5
	}
	if cfg.BruteForceWindow <= 0 {
		cfg.BruteForceWindow = 5 * time.Minute
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 100000
	}
	if cfg.MaxSeen <= 0 {
		cfg.MaxSeen = 100000
	}
	e := &Enricher{cfg: cfg, fails: failTable{index: map[uint64]int32{}}, seed: maphash.MakeSeed()}
	if cfg.NewSource {
		e.seen = newSeenSet(cfg.MaxSeen)
	}
	e.h.SetSeed(e.seed)
	e.salt = randomSalt()
	if cfg.NewSource && cfg.SeenPath != "" {
		data, err := os.ReadFile(cfg.SeenPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("reading the seen-sources file: %w", err)
		default:
			if err := e.load(data); err != nil {
				return nil, fmt.Errorf("seen-sources file %s is not valid (%v): move it away to start over (every source is then new once)", cfg.SeenPath, err)
			}
		}
	}
	return e, nil
}

func randomSalt() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// load reads a seen-sources file: version 2 (salt and hashes) or version 1
// (the keys themselves, as 0.x agents wrote them), hashed on reading.
func (e *Enricher) load(data []byte) error {
	var f seenFile
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	// Oldest first: past the bound, the set keeps the most recently seen.
	switch f.Version {
	case 1:
		slices.SortStableFunc(f.Seen, func(a, b seenEntry) int { return cmp.Compare(a.Last, b.Last) })
		for _, s := range f.Seen {
			e.remember(e.seenHash(s.Key), s.Last)
		}
		e.seenDirty = true // written back as version 2
	case seenVersion:
		e.salt = f.Salt
		slices.SortStableFunc(f.Hashes, func(a, b [2]uint64) int { return cmp.Compare(int64(a[1]), int64(b[1])) })
		for _, s := range f.Hashes {
			e.remember(s[0], int64(s[1]))
		}
	default:
		return fmt.Errorf("version %d: this agent reads versions 1 and %d", f.Version, seenVersion)
	}
	return nil
}

// seenHash is FNV-1a (64 bits) of the salt and the key's parts, each part
// followed by a zero byte: (server, account, source). A version 1 file's key
// is "server\0account\0source" whole, and hashed as one part it gives the
// same value as its three parts.
func (e *Enricher) seenHash(parts ...string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < 8; i++ {
		h ^= (e.salt >> (8 * i)) & 0xff
		h *= prime
	}
	for _, part := range parts {
		for i := 0; i < len(part); i++ {
			h ^= uint64(part[i])
			h *= prime
		}
		h *= prime // the separator: a zero byte (h ^= 0 is a no-op)
	}
	return h
}

// failKey is the fails map's key: a seeded hash of the rule, the server and
// the source or user.
func (e *Enricher) failKey(rule byte, server, who string) uint64 {
	e.h.Reset()
	e.h.WriteByte(rule)
	e.h.WriteString(server)
	e.h.WriteByte(0)
	e.h.WriteString(who)
	return e.h.Sum64()
}

// IsLocal reports whether a login came from this host: the socket (no ip),
// a loopback address, or localhost.
func IsLocal(ev *auditlogin.Event) bool {
	if ev.IP.Valid && ev.IP.S != "" {
		ip, err := netip.ParseAddr(ev.IP.S)
		return err == nil && ip.Unmap().IsLoopback()
	}
	if !ev.IP.Valid {
		return true // no ip: the socket
	}
	return ev.Host.S == "localhost" || ev.Host.S == "127.0.0.1" || ev.Host.S == "::1"
}

// Source is the address an event came from: its ip, else its host.
func Source(ev *auditlogin.Event) string {
	if ev.IP.Valid && ev.IP.S != "" {
		return ev.IP.S
	}
	if ev.Host.Valid {
		return ev.Host.S
	}
	return ""
}

// Enrich tags ev. Rules read the event's own @timestamp, so a backfill tags
// as the live run would have.
func (e *Enricher) Enrich(ev *auditlogin.Event) {
	failed := ev.Type == auditlogin.TypeFailed
	if failed {
		ev.AddTag(TagFailed)
	}
	if !ev.User.Valid {
		ev.AddTag(TagNoCredentials)
	}
	if (ev.User.Valid && ev.User.S == "root") || (ev.PrivUser.Valid && ev.PrivUser.S == "root") {
		ev.AddTag(TagRoot)
		if ev.Type != auditlogin.TypeLogout && !IsLocal(ev) {
			ev.AddTag(TagRemoteRoot)
		}
	}
	if failed {
		src := Source(ev)
		hit := false
		if src != "" && e.failure(e.failKey('i', ev.MyHost, src), ev.Timestamp) {
			hit = true
		}
		if ev.User.Valid && e.failure(e.failKey('u', ev.MyHost, ev.User.S), ev.Timestamp) {
			hit = true
		}
		if hit {
			ev.AddTag(TagBruteForce)
		}
	}
	if e.cfg.NewSource && ev.Type == auditlogin.TypeSuccess {
		account := ev.PrivUser.S
		if account == "" {
			account = ev.User.S
		}
		key := e.seenHash(ev.MyHost, account, Source(ev))
		if !e.remember(key, ev.Timestamp.Unix()) {
			ev.AddTag(TagNewSource)
		}
		e.seenDirty = true
	}
}

// failure records a failure of key at t and reports whether the key has
// reached the threshold within the window.
func (e *Enricher) failure(key uint64, at time.Time) bool {
	t := at.UnixNano()
	n := e.cfg.BruteForceThreshold
	f := &e.fails
	w, ok := f.index[key]
	if !ok {
		if len(f.index) >= min(max(f.pruneAt, minPruneAt), e.cfg.MaxTracked) {
			e.pruneFails(t)
			f.pruneAt = 2 * len(f.index)
		}
		if k := len(f.free); k > 0 {
			w, f.free = f.free[k-1], f.free[:k-1]
		} else {
			w = int32(len(f.count))
			f.count = append(f.count, 0)
			f.times = append(f.times, make([]int64, n)...)
		}
		f.count[w] = 0
		f.index[key] = w
	}
	times := f.times[int(w)*n : int(w)*n+n]
	c := int(f.count[w])
	cut := t - int64(e.cfg.BruteForceWindow)
	i := 0
	for i < c && times[i] < cut {
		i++
	}
	if c-i == n { // full: the oldest goes too
		i++
	}
	c = copy(times, times[i:c])
	times[c] = t
	f.count[w] = int32(c + 1)
	return c+1 >= n
}

// minPruneAt is the fewest keys the brute-force table prunes at.
const minPruneAt = 1024

// pruneFails drops keys with no failure within the window of t; if that is
// not enough, half of the rest (the table stays bounded under a flood of
// distinct sources).
func (e *Enricher) pruneFails(t int64) {
	cut := t - int64(e.cfg.BruteForceWindow)
	f := &e.fails
	n := e.cfg.BruteForceThreshold
	drop := func(k uint64, w int32) {
		delete(f.index, k)
		f.free = append(f.free, w)
	}
	for k, w := range f.index {
		if c := f.count[w]; c == 0 || f.times[int(w)*n+int(c)-1] < cut {
			drop(k, w)
		}
	}
	if len(f.index) >= min(max(f.pruneAt, minPruneAt), e.cfg.MaxTracked) {
		dropped := 0
		for k, w := range f.index {
			drop(k, w)
			if dropped++; dropped >= e.cfg.MaxTracked/2 {
				break
			}
		}
	}
}

// remember notes key as seen at last (unix seconds) and reports whether it
// was seen before.
func (e *Enricher) remember(key uint64, last int64) bool {
	_, ok := e.seen.swap(key, last)
	return ok
}

type seenEntry struct {
	Key  string `json:"key"`
	Last int64  `json:"last"`
}

const seenVersion = 2

// seenFile is the seen-sources file. Version 2: a salt and [hash, last seen]
// pairs; version 1 (read only): the keys in clear.
type seenFile struct {
	Version int         `json:"version"`
	Salt    uint64      `json:"salt,omitempty"`
	Hashes  [][2]uint64 `json:"hashes,omitempty"`
	Seen    []seenEntry `json:"seen,omitempty"`
}

// Flush writes the seen-set atomically (temp file, fsync, rename), when it
// changed since the last write.
func (e *Enricher) Flush() error {
	if w := e.Snapshot(); w != nil {
		return w()
	}
	return nil
}

// Snapshot copies the seen-set when it changed since the last snapshot and
// returns the function that writes that copy (nil: nothing to write). The
// copy is made here, on Enrich's goroutine; the write, with its sorting and
// fsync, can run on another.
func (e *Enricher) Snapshot() func() error {
	if !e.cfg.NewSource || e.cfg.SeenPath == "" || !e.seenDirty {
		return nil
	}
	salt, hashes := e.salt, make([][2]uint64, 0, e.seen.len())
	e.seen.each(func(k uint64, t int64) { hashes = append(hashes, [2]uint64{k, uint64(t)}) })
	e.seenDirty = false
	path := e.cfg.SeenPath
	return func() error { return writeSeen(path, salt, hashes) }
}

// writeSeen writes a version 2 seen-sources file, sorted by hash.
func writeSeen(path string, salt uint64, hashes [][2]uint64) error {
	slices.SortFunc(hashes, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	// Written as it is encoded (a seenFile through json.Marshal): 100,000
	// entries are 4 MB of JSON, which the agent's peak memory would hold.
	return auditlogin.WriteFileAtomicFunc(path, 0o640, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 32<<10)
		buf := fmt.Appendf(nil, `{"version":%d,"salt":%d,"hashes":[`, seenVersion, salt)
		for i, h := range hashes {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '[')
			buf = strconv.AppendUint(buf, h[0], 10)
			buf = append(buf, ',')
			buf = strconv.AppendUint(buf, h[1], 10)
			buf = append(buf, ']')
			if len(buf) > 16<<10 {
				bw.Write(buf)
				buf = buf[:0]
			}
		}
		bw.Write(append(buf, "]}\n"...))
		return bw.Flush()
	})
}

// Seen returns how many (server, account, source) entries are kept.
func (e *Enricher) Seen() int {
	if e.seen == nil {
		return 0
	}
	return e.seen.len()
}
