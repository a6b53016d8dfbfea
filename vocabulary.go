package auditlogin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FileID identifies one file's content independently of its name: device and
// inode, plus a fingerprint (SHA-256, hex) of its first FPLen bytes, so that a
// reused inode, or a file truncated and rewritten in place (copytruncate), is
// not mistaken for the file it replaced. FPLen is fixed when the file is first
// seen (min(size, tailer's fingerprint size)); comparing the first FPLen bytes
// stays valid while the file only grows.
type FileID struct {
	Dev   uint64
	Ino   uint64
	FPLen int
	FP    string
}

func (id FileID) String() string {
	fp := id.FP
	if len(fp) > 12 {
		fp = fp[:12]
	}
	return strconv.FormatUint(id.Dev, 10) + ":" + strconv.FormatUint(id.Ino, 10) + ":" + fp
}

// Position is where a record lies: bytes [Offset, End) of the file FileID,
// read at Path. End is just past the record's final newline, which is the
// offset to resume from once the record is acknowledged.
type Position struct {
	File   FileID
	Path   string
	Offset int64
	End    int64
}

// Line is one newline-terminated line read by the tailer, without its newline.
// Data is only valid until the pipeline's parser returns from Feed: a parser
// that keeps bytes (a record spanning lines) must copy them.
type Line struct {
	Data []byte
	Pos  Position
	// Truncated says the line was longer than the reader's limit: Data holds
	// its first bytes only, and the parser must reject it (in order, so that
	// a record it was part of is rejected with it).
	Truncated bool
	// EndOfFile carries no data: the tailer will send no more lines of this
	// identity (a rotated file read to its end). The pipeline then calls the
	// parser's Flush, if it has one, so a pending record is rejected, not lost.
	EndOfFile bool
	// Idle carries no data: nothing was appended to the file for a while
	// (tailer.Config.IdleAfter). The pipeline calls the parser's Idle, if it
	// has one: a parser holding records to look ahead may decide now.
	Idle bool
	// Parser is the parser of the file segment this line belongs to. The
	// tailer makes one per file identity; only the pipeline's parse stage
	// calls it, from one goroutine, in file order.
	Parser Parser
}

// Record is what a parser makes of one or more lines: an Event, a rejection
// (Err set, Raw the bytes rejected), or neither (a line that holds nothing to
// ship, such as a query record or a dropped logout). Every byte of the file
// belongs to exactly one record, so offsets can advance over all of them.
type Record struct {
	Pos   Position
	Event *Event
	Err   error
	Raw   []byte
}

// Parser turns the lines of one file into records.
//
// The tailer creates one Parser per followed file identity; the pipeline calls
// Feed from a single goroutine with the lines in file order. Feed calls emit
// once per record completed by the line, in order, before returning; a line
// that only begins a record (audit_login user names may contain newlines)
// emits nothing yet, and the record's Pos then spans all its lines. A record
// still incomplete when the agent stops is not acknowledged, so it is read
// again on restart.
type Parser interface {
	Feed(line Line, emit func(Record))
}

// Formatter is implemented by parsers that name their format (for counts
// per format).
type Formatter interface {
	Format() string
}

// Idler is implemented by parsers that hold records waiting for a later
// line (the general log's Connect lines); see Line.Idle.
type Idler interface {
	Idle(emit func(Record))
}

// Flusher is implemented by parsers that hold an incomplete record between
// lines. One-shot readers (the parse and report commands) call Flush at the
// end of a complete file, so that what is pending is rejected, not silently
// dropped. The tailer never calls it: a live file may still complete it.
type Flusher interface {
	Flush(emit func(Record))
}

// Output delivers batches of events to one destination.
//
// The pipeline calls Write from one goroutine per output, one batch at a time
// (several at once for outputs that implement Concurrent), and Close once
// after the last Write has returned. Events arrive in the order they were
// read, except that items refused earlier are sent again ahead of newer ones. Write returns nil only when every event of the batch is delivered:
// durable at the destination, or, for outputs that also implement Syncer,
// handed to the OS so that the next Sync makes it durable. On error, it
// returns a *PartialError naming the items that failed (the others are
// delivered), or an error for the whole batch. Errors wrapped with Permanent
// are not retried: those events go to the dead-letter file. Any other error is
// retried, with backoff, until it succeeds or the pipeline shuts down; Write
// must return promptly when ctx is cancelled.
type Output interface {
	Name() string
	Write(ctx context.Context, batch []*Event) error
	Close() error
}

// Concurrent is implemented by outputs that take several Write calls at
// once (network outputs: while one request waits for its acknowledgement,
// the next is already sent). Workers is how many; the pipeline then calls
// Write from that many goroutines, and a batch may hold events in any order
// (refused items come back with later ones). Outputs that are not
// Concurrent get one Write at a time.
type Concurrent interface {
	Workers() int
}

// Syncer is implemented by outputs whose Write leaves data in OS buffers (the
// file output). The pipeline calls Sync before every checkpoint commit, from
// the committer goroutine, never concurrently with another Sync.
type Syncer interface {
	Sync() error
}

// Spool is one output's bounded on-disk buffer (package spool). When an
// output falls behind the others, or is down, the pipeline appends what it
// cannot take to its spool instead of holding reading back: the output's
// share of those records counts as done (the spool holds them), so offsets
// move and the other outputs go on. The output then reads the spool back
// in order. Append is called from the pipeline's parse goroutine, Next and
// the acks from the output's feeder and writers, Sync from the committer
// (before every checkpoint commit: what a commit covers is durable), Stats
// from anywhere.
type Spool interface {
	// Append writes the events' encoded form in order. It blocks while the
	// spool is full (max bytes), until space is freed or ctx ends.
	Append(ctx context.Context, evs []*Event) error
	// Next returns up to max events not yet read, oldest first, and a
	// function to call once every one of them is delivered; none if all
	// are read. Events come back decoded (DecodeEvent).
	Next(max int) ([]*Event, func(), error)
	// Unread is how many appended events Next has not returned yet.
	Unread() int64
	// Pending is how many appended events are not yet acknowledged.
	Pending() int64
	// Appended is signalled (capacity one) after each Append.
	Appended() <-chan struct{}
	Sync() error
	Stats() SpoolStats
	Close() error
}

// SpoolStats describe an output's spool.
type SpoolStats struct {
	Events int64     // appended and not yet acknowledged
	Bytes  int64     // on disk
	Oldest time.Time // when the oldest unacknowledged event was appended (zero: none)
}

// Retrier is implemented by outputs with their own retry backoff (from
// their config); others use the pipeline's.
type Retrier interface {
	RetryBackoff() (initial, max time.Duration)
}

// Checker is implemented by outputs that can test their destination:
// reachability, authentication, what exists there. auditlogin check calls it
// and prints the report, one plain sentence a line; an error means the
// destination cannot be used as configured.
type Checker interface {
	Check(ctx context.Context) (report []string, err error)
}

// Committed is the offset committed for one file: every byte before Offset
// has been delivered by every output (or dead-lettered).
type Committed struct {
	Path   string
	Offset int64
}

// Checkpoint stores committed offsets (the tailer's registry). The pipeline
// calls Commit from one goroutine, with the files whose offset moved since the
// last call, after syncing every output; Commit must make them durable
// (atomically) before it returns.
type Checkpoint interface {
	Commit(offsets map[FileID]Committed) error
}

// DeadLetterEntry is a record that could not be shipped: a line the parser
// rejected, or an event an output refused permanently.
type DeadLetterEntry struct {
	Time   time.Time
	Path   string
	Offset int64
	Reason string
	Output string // the output that refused it; empty for parse errors
	Raw    []byte // the rejected bytes (parse errors)
	Event  *Event // the refused event (output errors)
}

// DeadLetter keeps rejected records. The pipeline calls it from several
// goroutines (the parse stage and each output): implementations lock.
type DeadLetter interface {
	Write(DeadLetterEntry) error
	Sync() error
}

// ErrPermanent marks an error that retrying cannot fix.
var ErrPermanent = errors.New("permanent error")

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() []error {
	return []error{p.err, ErrPermanent}
}

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// ItemError is the failure of one event of a batch.
type ItemError struct {
	Index int // index into the batch passed to Write
	Err   error
}

// PartialError says which items of a batch failed; all others were delivered.
type PartialError struct {
	Failed []ItemError
}

func (e *PartialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d item(s) failed", len(e.Failed))
	for i, f := range e.Failed {
		if i == 3 {
			b.WriteString(", ...")
			break
		}
		fmt.Fprintf(&b, "; item %d: %v", f.Index, f.Err)
	}
	return b.String()
}
