// Package spool is an output's bounded on-disk buffer (auditlogin.Spool):
// segment files of encoded events, appended by the pipeline while the
// output is behind, read back in order by the output, and deleted once
// every event of a segment is acknowledged.
//
// On disk, one directory per output:
//
//	0000000000000001.seg   records: length (4 bytes, little endian), CRC-32C
//	0000000000000002.seg   of the rest (4), append time in unix nanoseconds
//	...                    (8), then the payload: the length of the route
//	                       (2), the route ("topic\0index", a route
//	                       processor's, usually empty), the event's JSON
//	acked                  {"segment":N,"offset":X}: every record before
//	                       offset X of segment N (and every older segment)
//	                       is delivered
//
// Each run appends to new segments only, so a record torn by a crash is
// always at the end of a segment of an earlier run: reading stops there.
// Nothing is fsynced per append: Sync (the pipeline calls it before every
// checkpoint commit) makes the segments and the acked position durable, so
// what a committed offset covers is on disk. What was appended after the
// last Sync is read again from the source after a crash (at least once;
// Elasticsearch keeps one copy by _id).
//
// No library: the on-disk queues for Go that were looked at (nsqio/go-diskqueue,
// joncrlsn/dque, beeker1121/goque on LevelDB) either fsync on their own
// schedule with no hook to tie it to the checkpoint, acknowledge on read
// (no redelivery of what was read but not delivered), or bring a database;
// what is needed here is about 400 lines.
package spool

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/auditlogin/auditlogin"
)

const headerLen = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Config configures a spool.
type Config struct {
	Dir          string // this output's directory (created)
	MaxBytes     int64  // Append blocks beyond this many bytes on disk (default 1 GiB)
	SegmentBytes int64  // a segment is closed past this size (default min(16 MiB, MaxBytes/8), at least 64 KiB)
	Logger       *slog.Logger
}

type segment struct {
	seq    uint64
	path   string
	size   int64 // valid bytes
	events int64 // records in it
	read   int64 // records returned by Next
}

// chunk is what one Next returned: acknowledged as one.
type chunk struct {
	seq   uint64
	end   int64 // offset after its last record
	n     int64
	first int64 // append time of its first record (unix ns)
	acked bool
}

// Spool is one output's spool. Safe for concurrent use.
type Spool struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	cond *sync.Cond // Append waits here while the spool is full

	segs    []*segment // oldest first; the last may be the write segment
	w       *os.File   // write segment's file, nil until the first Append of this run
	wseg    *segment
	wdirty  bool // written since the last Sync
	dirNew  bool // a segment was created since the last Sync (fsync the directory)
	nextSeq uint64

	rseg    int   // index in segs of the segment being read
	roff    int64 // offset in it
	unread  int64
	pending int64 // appended, not acknowledged
	bytes   int64 // on disk

	chunks   []*chunk // returned by Next, oldest first, until acknowledged in order
	ackSeq   uint64
	ackOff   int64
	ackDirty bool
	readBuf  []byte

	appended chan struct{}
	closed   bool
}

// Open opens (or creates) the spool in cfg.Dir and finds what earlier runs
// left unacknowledged.
func Open(cfg Config) (*Spool, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = min(16<<20, cfg.MaxBytes/8)
	}
	cfg.SegmentBytes = max(cfg.SegmentBytes, 64<<10)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, err
	}
	s := &Spool{cfg: cfg, log: cfg.Logger, appended: make(chan struct{}, 1), nextSeq: 1}
	s.cond = sync.NewCond(&s.mu)
	if data, err := os.ReadFile(filepath.Join(cfg.Dir, "acked")); err == nil {
		var a struct {
			Segment uint64 `json:"segment"`
			Offset  int64  `json:"offset"`
		}
		if err := json.Unmarshal(data, &a); err != nil {
			return nil, fmt.Errorf("spool %s: the acked file is not valid (%v): move the directory away to start over (what it holds is then sent again)", cfg.Dir, err)
		}
		s.ackSeq, s.ackOff = a.Segment, a.Offset
		s.nextSeq = a.Segment + 1 // new segments sort after the acknowledged one, deleted or not
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		path := s.segPath(seq)
		s.nextSeq = max(s.nextSeq, seq+1)
		if seq < s.ackSeq {
			os.Remove(path) // acknowledged before a crash, not yet deleted
			continue
		}
		seg, err := s.scan(seq, path)
		if err != nil {
			return nil, err
		}
		if seg.events == 0 {
			os.Remove(path)
			continue
		}
		s.segs = append(s.segs, seg)
		s.unread += seg.events
		s.pending += seg.events
		s.bytes += seg.size
	}
	if len(s.segs) > 0 && s.segs[0].seq == s.ackSeq {
		s.roff = s.ackOff
	} else {
		s.ackSeq, s.ackOff = 0, 0
	}
	return s, nil
}

func (s *Spool) segPath(seq uint64) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%016d.seg", seq))
}

// scan counts a segment's valid records (from the acked offset, in the
// acked segment) and finds where they end; what follows (a record torn by
// a crash) is ignored.
func (s *Spool) scan(seq uint64, path string) (*segment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seg := &segment{seq: seq, path: path}
	off := int64(0)
	if seq == s.ackSeq {
		off = min(s.ackOff, int64(len(data)))
	}
	for {
		n, ok := record(data[off:])
		if !ok {
			break
		}
		off += int64(n)
		seg.events++
	}
	seg.size = off
	if off < int64(len(data)) {
		s.log.Warn("spool segment ends with a partial record (a crash while appending); what it held is read again from the source",
			"segment", path, "valid_bytes", off, "size", len(data))
	}
	return seg, nil
}

// record checks the record at the start of b and returns its length.
func record(b []byte) (int, bool) {
	if len(b) < headerLen {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)-headerLen {
		return 0, false
	}
	if crc32.Checksum(b[8:headerLen+n], castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, false
	}
	return headerLen + n, true
}

// Append writes the events at the end of the spool, waiting while it is
// full. On a write error nothing of the batch stays in the segment.
func (s *Spool) Append(ctx context.Context, evs []*auditlogin.Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	route := func(ev *auditlogin.Event) string {
		if ev.Route == (auditlogin.Route{}) {
			return ""
		}
		return ev.Route.Topic + "\x00" + ev.Route.Index
	}
	size := 0
	for _, ev := range evs {
		size += headerLen + 2 + len(route(ev)) + len(ev.Encoded)
	}
	buf := make([]byte, 0, size)
	for _, ev := range evs {
		r := route(ev)
		start := len(buf)
		buf = append(buf, make([]byte, headerLen)...)
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(r)))
		buf = append(buf, r...)
		buf = append(buf, ev.Encoded...)
		h := buf[start : start+headerLen]
		binary.LittleEndian.PutUint32(h[0:], uint32(len(buf)-start-headerLen))
		binary.LittleEndian.PutUint64(h[8:], uint64(now))
		binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(buf[start+8:], castagnoli))
	}
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.bytes > 0 && s.bytes+int64(len(buf)) > s.cfg.MaxBytes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed {
			return errors.New("spool closed")
		}
		s.cond.Wait()
	}
	if s.w == nil || s.wseg.size+int64(len(buf)) > s.cfg.SegmentBytes && s.wseg.size > 0 {
		if err := s.roll(); err != nil {
			return err
		}
	}
	if n, err := s.w.Write(buf); err != nil {
		if n > 0 {
			if terr := s.w.Truncate(s.wseg.size); terr != nil {
				// The segment now ends with a partial record: close it so
				// that nothing is appended after it (reading stops there).
				s.w.Close()
				s.w, s.wseg = nil, nil
				s.bytes += int64(n)
			}
		}
		return err
	}
	s.wseg.size += int64(len(buf))
	s.wseg.events += int64(len(evs))
	s.unread += int64(len(evs))
	s.pending += int64(len(evs))
	s.bytes += int64(len(buf))
	s.wdirty = true
	select {
	case s.appended <- struct{}{}:
	default:
	}
	return nil
}

// roll closes the write segment and starts a new one.
func (s *Spool) roll() error {
	if s.w != nil {
		if s.wdirty {
			if err := s.w.Sync(); err != nil {
				return err
			}
			s.wdirty = false
		}
		s.w.Close()
		s.w, s.wseg = nil, nil
	}
	seq := s.nextSeq
	path := s.segPath(seq)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	s.nextSeq++
	s.w = f
	s.wseg = &segment{seq: seq, path: path}
	s.segs = append(s.segs, s.wseg)
	s.dirNew = true
	return nil
}

// readAt reads n bytes of seg at off.
func (s *Spool) readAt(seg *segment, off, n int64) ([]byte, error) {
	if int64(cap(s.readBuf)) < n {
		s.readBuf = make([]byte, n)
	}
	buf := s.readBuf[:n]
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	got, err := f.ReadAt(buf, off)
	if err == io.EOF && int64(got) == n {
		err = nil
	}
	return buf[:got], err
}

// Next returns up to max unread events and their acknowledgement. A chunk
// never spans two segments.
func (s *Spool) Next(max int) ([]*auditlogin.Event, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []*auditlogin.Event
	var firstErr error
	ch := &chunk{}
	for len(evs) < max && s.unread > 0 && s.rseg < len(s.segs) {
		seg := s.segs[s.rseg]
		if s.roff >= seg.size {
			if seg == s.wseg || ch.n > 0 || ch.end > 0 {
				break
			}
			s.rseg++
			s.roff = 0
			continue
		}
		buf, err := s.readAt(seg, s.roff, min(seg.size-s.roff, 1<<20))
		if err == nil && len(buf) >= headerLen {
			// A record longer than the read: read it whole.
			if l := int64(binary.LittleEndian.Uint32(buf)) + headerLen; l > int64(len(buf)) && s.roff+l <= seg.size {
				buf, err = s.readAt(seg, s.roff, l)
			}
		}
		off := 0
		for err == nil && len(evs) < max {
			n, ok := record(buf[off:])
			if !ok {
				break
			}
			payload := buf[off+headerLen : off+n]
			var route string
			if len(payload) >= 2 && int(binary.LittleEndian.Uint16(payload))+2 <= len(payload) {
				rl := int(binary.LittleEndian.Uint16(payload))
				route, payload = string(payload[2:2+rl]), payload[2+rl:]
			}
			data := append([]byte(nil), payload...)
			if ev, derr := auditlogin.DecodeEvent(data); derr != nil {
				// Written by this agent with a valid checksum: not expected.
				// Acknowledged with its chunk, so that it cannot stop the spool.
				s.log.Error("spooled record is not an event; skipped", "segment", seg.path, "offset", s.roff+int64(off), "err", derr)
				if firstErr == nil {
					firstErr = derr
				}
			} else {
				if len(evs) == 0 {
					ch.first = int64(binary.LittleEndian.Uint64(buf[off+8:]))
				}
				if topic, index, ok := strings.Cut(route, "\x00"); ok {
					ev.Route = auditlogin.Route{Topic: topic, Index: index}
				}
				evs = append(evs, ev)
			}
			off += n
			ch.n++
			seg.read++
			s.unread--
		}
		if err == nil && off > 0 {
			s.roff += int64(off)
			ch.seq, ch.end = seg.seq, s.roff
			continue
		}
		if err == nil {
			err = fmt.Errorf("offset %d: record does not check out", s.roff)
		}
		// Unreadable: the rest of the segment is given up, logged, so that
		// the spool goes on.
		lost := seg.events - seg.read
		s.log.Error("spool segment cannot be read; its unread events are given up", "segment", seg.path,
			"offset", s.roff, "events", lost, "err", err)
		if firstErr == nil {
			firstErr = fmt.Errorf("spool segment %s: %w", seg.path, err)
		}
		seg.read = seg.events
		s.unread -= lost
		s.pending -= lost
		s.roff = seg.size
		ch.seq, ch.end = seg.seq, seg.size
		break
	}
	if ch.n == 0 && ch.end == 0 {
		return nil, nil, firstErr
	}
	s.chunks = append(s.chunks, ch)
	if len(evs) == 0 {
		s.ackLocked(ch) // nothing to deliver
		return nil, nil, firstErr
	}
	return evs, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ackLocked(ch)
	}, firstErr
}

// ackLocked records a chunk delivered; the acknowledged position moves over
// the contiguous prefix of chunks, and segments wholly behind it are
// deleted. mu is held.
func (s *Spool) ackLocked(ch *chunk) {
	ch.acked = true
	n := 0
	for n < len(s.chunks) && s.chunks[n].acked {
		c := s.chunks[n]
		s.pending -= c.n
		s.ackSeq, s.ackOff, s.ackDirty = c.seq, c.end, true
		n++
	}
	if n == 0 {
		return
	}
	s.chunks = append(s.chunks[:0], s.chunks[n:]...)
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if seg.seq > s.ackSeq || seg.seq == s.ackSeq && (s.ackOff < seg.size || seg.read < seg.events) {
			break
		}
		if seg == s.wseg {
			if s.unread > 0 {
				break
			}
			// Everything written is delivered: the spool is empty again.
			s.w.Close()
			s.w, s.wseg, s.wdirty = nil, nil, false
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("deleting an acknowledged spool segment", "segment", seg.path, "err", err)
		}
		s.bytes -= seg.size
		s.segs = s.segs[1:]
		if s.rseg == 0 {
			s.roff = 0 // the reader was at this segment's end
		} else {
			s.rseg--
		}
	}
	s.cond.Broadcast()
}

// Unread is how many appended events Next has not returned.
func (s *Spool) Unread() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unread
}

// Pending is how many appended events are not yet acknowledged.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Appended is signalled after each Append.
func (s *Spool) Appended() <-chan struct{} { return s.appended }

// Sync makes what was appended, and the acknowledged position, durable.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil && s.wdirty {
		if err := s.w.Sync(); err != nil {
			return err
		}
		s.wdirty = false
	}
	if s.dirNew {
		if d, err := os.Open(s.cfg.Dir); err == nil {
			err = d.Sync()
			d.Close()
			if err != nil {
				return err
			}
		}
		s.dirNew = false
	}
	if s.ackDirty {
		data := fmt.Appendf(nil, `{"segment":%d,"offset":%d}`, s.ackSeq, s.ackOff)
		if err := auditlogin.WriteFileAtomic(filepath.Join(s.cfg.Dir, "acked"), data, 0o640); err != nil {
			return err
		}
		s.ackDirty = false
	}
	return nil
}

// Stats describes the spool now.
func (s *Spool) Stats() auditlogin.SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := auditlogin.SpoolStats{Events: s.pending, Bytes: s.bytes}
	if len(s.chunks) > 0 && s.chunks[0].first > 0 {
		st.Oldest = time.Unix(0, s.chunks[0].first)
	} else if s.unread > 0 && s.rseg < len(s.segs) {
		seg := s.segs[s.rseg]
		var h [headerLen]byte
		if f, err := os.Open(seg.path); err == nil {
			if _, err := f.ReadAt(h[:], s.roff); err == nil {
				st.Oldest = time.Unix(0, int64(binary.LittleEndian.Uint64(h[8:])))
			}
			f.Close()
		}
	}
	return st
}

// Close syncs and closes the spool; what it holds is read on the next Open.
func (s *Spool) Close() error {
	err := s.Sync()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.w != nil {
		s.w.Close()
		s.w, s.wseg = nil, nil
	}
	s.cond.Broadcast()
	return err
}

var _ auditlogin.Spool = (*Spool)(nil)
