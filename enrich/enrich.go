// Package enrich tags events in the pipeline with what a DBA looks for:
// failed logins, connections without credentials (port probes), root and
// remote root logins, brute force (many failures from one source or for one
// user within a window) and new sources (an account seen from an address for
// the first time on a server; the seen-set is persisted and bounded). It
// runs on the pipeline's single parse goroutine: no locking on the hot path.
package enrich

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"sync"
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

// Enricher applies the rules. Enrich is called from one goroutine; Flush may
// be called from another at any time (the agent does, every few seconds).
type Enricher struct {
	cfg Config

	fails map[string]*window // "ip:" or "user:" key → recent failure times

	mu        sync.Mutex // guards seen against Flush
	seen      map[string]int64
	seenDirty bool
	times     []int64 // trimSeen's scratch
}

// window holds the times of the last failures of one key, oldest first.
type window struct {
	times []time.Time
}

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
	e := &Enricher{cfg: cfg, fails: map[string]*window{}, seen: map[string]int64{}}
	if cfg.NewSource && cfg.SeenPath != "" {
		data, err := os.ReadFile(cfg.SeenPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("reading the seen-sources file: %w", err)
		default:
			var f seenFile
			if err := json.Unmarshal(data, &f); err != nil {
				return nil, fmt.Errorf("seen-sources file %s is not valid (%v): move it away to start over (every source is then new once)", cfg.SeenPath, err)
			}
			for _, s := range f.Seen {
				e.seen[s.Key] = s.Last
			}
		}
	}
	return e, nil
}

// IsLocal reports whether a login came from this host: the socket (no ip),
// a loopback address, or localhost.
func IsLocal(ev *auditlogin.Event) bool {
	if ev.IP.Valid && ev.IP.S != "" {
		ip := net.ParseIP(ev.IP.S)
		return ip != nil && ip.IsLoopback()
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
		if src != "" && e.failure("ip:"+ev.MyHost+"\x00"+src, ev.Timestamp) {
			hit = true
		}
		if ev.User.Valid && e.failure("user:"+ev.MyHost+"\x00"+ev.User.S, ev.Timestamp) {
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
		key := ev.MyHost + "\x00" + account + "\x00" + Source(ev)
		e.mu.Lock()
		if _, ok := e.seen[key]; !ok {
			ev.AddTag(TagNewSource)
		}
		e.seen[key] = ev.Timestamp.Unix()
		e.seenDirty = true
		if len(e.seen) > e.cfg.MaxSeen {
			e.trimSeen()
		}
		e.mu.Unlock()
	}
}

// failure records a failure of key at t and reports whether the key has
// reached the threshold within the window.
func (e *Enricher) failure(key string, t time.Time) bool {
	w := e.fails[key]
	if w == nil {
		if len(e.fails) >= e.cfg.MaxTracked {
			e.pruneFails(t)
		}
		w = &window{}
		e.fails[key] = w
	}
	cut := t.Add(-e.cfg.BruteForceWindow)
	i := 0
	for i < len(w.times) && w.times[i].Before(cut) {
		i++
	}
	w.times = append(w.times[i:], t)
	if n := e.cfg.BruteForceThreshold; len(w.times) > n {
		w.times = w.times[len(w.times)-n:]
	}
	return len(w.times) >= e.cfg.BruteForceThreshold
}

// pruneFails drops keys with no failure within the window of t; if that is
// not enough, half of the rest (the map stays bounded under a flood of
// distinct sources).
func (e *Enricher) pruneFails(t time.Time) {
	cut := t.Add(-e.cfg.BruteForceWindow)
	for k, w := range e.fails {
		if len(w.times) == 0 || w.times[len(w.times)-1].Before(cut) {
			delete(e.fails, k)
		}
	}
	if len(e.fails) >= e.cfg.MaxTracked {
		n := 0
		for k := range e.fails {
			delete(e.fails, k)
			if n++; n >= e.cfg.MaxTracked/2 {
				break
			}
		}
	}
}

// trimSeen drops the least recently seen entries down to 80% of MaxSeen
// (so it runs once per 20% of MaxSeen of new sources); mu is held. The
// cutoff is the keep-th largest time, found by selection (linear), not a
// sort: on a fleet with many sources this ran every few thousand events.
func (e *Enricher) trimSeen() {
	times := e.times[:0]
	for _, t := range e.seen {
		times = append(times, t)
	}
	e.times = times
	keep := e.cfg.MaxSeen * 8 / 10
	cutoff := nth(times, len(times)-keep)
	for k, t := range e.seen {
		if t < cutoff {
			delete(e.seen, k)
		}
	}
}

// nth returns the value that would be at index k of a sorted a, reordering
// a (Hoare's selection, middle pivot; times are near-random, no adversary).
func nth(a []int64, k int) int64 {
	lo, hi := 0, len(a)-1
	for lo < hi {
		pivot := a[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for a[i] < pivot {
				i++
			}
			for a[j] > pivot {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return a[k]
		}
	}
	return a[k]
}

type seenEntry struct {
	Key  string `json:"key"`
	Last int64  `json:"last"`
}

type seenFile struct {
	Version int         `json:"version"`
	Seen    []seenEntry `json:"seen"`
}

// Flush writes the seen-set atomically (temp file, fsync, rename).
func (e *Enricher) Flush() error {
	if !e.cfg.NewSource || e.cfg.SeenPath == "" {
		return nil
	}
	e.mu.Lock()
	if !e.seenDirty {
		e.mu.Unlock()
		return nil
	}
	f := seenFile{Version: 1, Seen: make([]seenEntry, 0, len(e.seen))}
	for k, t := range e.seen {
		f.Seen = append(f.Seen, seenEntry{k, t})
	}
	e.seenDirty = false
	e.mu.Unlock()
	sort.Slice(f.Seen, func(i, j int) bool { return f.Seen[i].Key < f.Seen[j].Key })
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return auditlogin.WriteFileAtomic(e.cfg.SeenPath, data, 0o640)
}

// Seen returns how many (server, account, source) entries are kept.
func (e *Enricher) Seen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}
