package file

import (
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/auditlogin/auditlogin"
)

// DeadLetter keeps rejected records as NDJSON, one object per record:
//
//	{"@timestamp":"…","log":{"file":{"path":"…"},"offset":123},"reason":"…",
//	 "output":"…","raw":"…","raw_base64":"…","event":{…}}
//
// raw holds the rejected bytes when they are valid UTF-8, raw_base64 when they
// are not; event holds an event an output refused.
type DeadLetter struct{ w *writer }

// NewDeadLetter opens (or creates) the dead-letter file.
func NewDeadLetter(cfg Config) (*DeadLetter, error) {
	if cfg.BufferSize == 0 {
		cfg.BufferSize = 8 << 10 // records come one at a time, seldom: no 256 KiB buffer held for them
	}
	w, err := newWriter(cfg)
	if err != nil {
		return nil, err
	}
	return &DeadLetter{w: w}, nil
}

type dlFile struct {
	Path string `json:"path"`
}

type dlLog struct {
	File   dlFile `json:"file"`
	Offset int64  `json:"offset"`
}

type dlRecord struct {
	Timestamp time.Time       `json:"@timestamp"`
	Log       dlLog           `json:"log"`
	Reason    string          `json:"reason"`
	Output    string          `json:"output,omitempty"`
	Raw       *string         `json:"raw,omitempty"`
	RawBase64 string          `json:"raw_base64,omitempty"`
	Event     json.RawMessage `json:"event,omitempty"`
}

// Write implements auditlogin.DeadLetter.
func (d *DeadLetter) Write(e auditlogin.DeadLetterEntry) error {
	r := dlRecord{Timestamp: e.Time, Log: dlLog{File: dlFile{Path: e.Path}, Offset: e.Offset}, Reason: e.Reason, Output: e.Output}
	if e.Raw != nil {
		if utf8.Valid(e.Raw) {
			s := string(e.Raw)
			r.Raw = &s
		} else {
			r.RawBase64 = base64.StdEncoding.EncodeToString(e.Raw)
		}
	}
	if e.Event != nil {
		if len(e.Event.Encoded) > 0 {
			r.Event = e.Event.Encoded
		} else {
			r.Event = e.Event.AppendJSON(nil)
		}
	}
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return d.w.appendLines(1, func(int) []byte { return line })
}

// Sync implements auditlogin.DeadLetter.
func (d *DeadLetter) Sync() error { return d.w.sync() }

// Close closes the file.
func (d *DeadLetter) Close() error { return d.w.close() }
