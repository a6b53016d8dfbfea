package auditlogin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// refJSONString is the JSON string encoding the agent documents, written
// the plain way (one byte at a time): escapes for '"', '\\', \n, \r, \t,
// \u00XX for other control characters, \ufffd for each byte that is not
// valid UTF-8, \u2028/\u2029 escaped, everything else as is.
func refJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20:
				fmt.Fprintf(&b, `\u%04x`, c)
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
	return b.String()
}

// The encoder gives exactly the documented bytes (not merely JSON that
// decodes the same: escaping a space would pass that), at every position
// around the 8-byte fast path, for every byte value.
func TestAppendJSONStringExactBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		for n := 1; n <= 26; n++ { // lengths around one, two and three 8-byte words
			for pos := 0; pos < n; pos++ {
				for _, mid := range []string{string([]byte{byte(c)}), string(rune(c))} {
					s := strings.Repeat("x", pos) + mid + strings.Repeat("y", n-1-pos)
					if got, want := string(AppendJSONString(nil, s)), refJSONString(s); got != want {
						t.Fatalf("%q: got %s, want %s", s, got, want)
					}
				}
			}
		}
	}
	for _, s := range []string{"", " ", "\u2028", "a\u2029b", "ü\xff\xc3", "😀", strings.Repeat("\xe2\x82", 5)} {
		if got, want := string(AppendJSONString(nil, s)), refJSONString(s); got != want {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
}

// An event with several tags, static fields in no order and agent info
// encodes to exactly the documented layout (keys sorted, commas between).
func TestAppendJSONLayout(t *testing.T) {
	ev := &Event{Timestamp: time.Date(2013, 9, 11, 7, 11, 47, 123456789, time.UTC), TS: "2013-09-11 09:11:47",
		Type: TypeFailed, MyHost: "gromit03", Thread: "74153868", User: Str("web_user"), PrivUser: Str(""),
		Host: Null, IP: Str("10.0.0.87"), ID: "cb39", Format: "audit_login", Tags: []string{"failed", "brute_force", "root"},
		Path: "/l", Offset: 181, Agent: &AgentInfo{Hostname: "a", Version: "v"},
		Fields: map[string]any{"zone": "z", "dc": "d", "env": "e", "app": "x"}}
	want := `{"@timestamp":"2013-09-11T07:11:47.123Z","ts":"2013-09-11 09:11:47","type":"failed_login","myhost":"gromit03",` +
		`"thread":"74153868","user":"web_user","priv_user":"","host":null,"ip":"10.0.0.87","id":"cb39","format":"audit_login",` +
		`"tags":["failed","brute_force","root"],"log":{"file":{"path":"/l"},"offset":181},"agent":{"hostname":"a","version":"v"},` +
		`"fields":{"app":"x","dc":"d","env":"e","zone":"z"}}`
	if got := string(ev.AppendJSON(nil)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	ev.Fields, ev.Agent, ev.Tags = nil, nil, []string{}
	if got := string(ev.AppendJSON(nil)); !strings.HasSuffix(got, `"tags":[],"log":{"file":{"path":"/l"},"offset":181}}`) {
		t.Fatalf("without fields and agent: %s", got)
	}
}

func TestAppendTimestampYearEdges(t *testing.T) {
	for _, y := range []int{0, 1, 999, 1000, 9999, 10000, -1} {
		ts := time.Date(y, 12, 31, 23, 59, 59, 999e6, time.UTC)
		if got, want := string(appendTimestamp(nil, ts)), ts.Format("2006-01-02T15:04:05.000Z07:00"); got != want {
			t.Errorf("year %d: %s, want %s", y, got, want)
		}
	}
}

func TestCanonicalIPOctetEdges(t *testing.T) {
	for in, want := range map[string]string{"010.0.0.255": "10.0.0.255", "0.00.000.0": "0.0.0.0", "255.255.255.0255": ""} {
		got, ok := CanonicalIP(in)
		if (want == "") == ok || got != want {
			t.Errorf("CanonicalIP(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := CanonicalIP("010.0.0.256"); ok {
		t.Error("an octet of 256 accepted")
	}
}

// WriteFileAtomic: the content and mode, a replaced file, no temporary
// left behind, and an error (not a silent nil) when it cannot write.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "reg.json")
	if err := WriteFileAtomic(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if err != nil || string(data) != "two" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("content %q mode %v err %v", data, fi.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory, want 1 (no temporary left)", len(entries))
	}
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o644)
	if err := WriteFileAtomic(filepath.Join(blocker, "x"), []byte("x"), 0o600); err == nil {
		t.Fatal("writing under a regular file succeeded")
	}
	os.Mkdir(filepath.Join(dir, "ro"), 0o555)
	if os.Geteuid() != 0 { // root writes anywhere
		if err := WriteFileAtomic(filepath.Join(dir, "ro", "x"), []byte("x"), 0o600); err == nil {
			t.Fatal("writing in a read-only directory succeeded")
		}
	}
	if err := WriteFileAtomic(filepath.Join(dir, "sub"), []byte("x"), 0o600); err == nil {
		t.Fatal("replacing a directory succeeded")
	}
}

// ReadLines: offsets, a last line without newline only when final, lines
// longer than maxLine cut and marked, across the reader's 64 KiB buffer.
func TestReadLines(t *testing.T) {
	long := strings.Repeat("L", 70000)
	in := "a\n\nbc\n" + long + "\nd\ntail"
	type got struct {
		data      string
		off, end  int64
		truncated bool
	}
	read := func(final bool, maxLine int) ([]got, int64) {
		var out []got
		end, err := ReadLines(strings.NewReader(in), "p", maxLine, final, func(l Line) {
			out = append(out, got{string(l.Data), l.Pos.Offset, l.Pos.End, l.Truncated})
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, end
	}
	lines, end := read(false, 100)
	longEnd := int64(6 + 70000 + 1)
	want := []got{{"a", 0, 2, false}, {"", 2, 3, false}, {"bc", 3, 6, false}, {long[:100], 6, longEnd, true}, {"d", longEnd, longEnd + 2, false}}
	if fmt.Sprint(lines) != fmt.Sprint(want) || end != longEnd+2 {
		t.Fatalf("not final: %v end %d\nwant %v end %d", lines, end, want, longEnd+2)
	}
	lines, end = read(true, 0) // default max: the long line whole
	if len(lines) != 6 || lines[3].data != long || lines[3].truncated || lines[5] != (got{"tail", longEnd + 2, longEnd + 6, false}) || end != int64(len(in)) {
		t.Fatalf("final: %d lines, last %v, end %d", len(lines), lines[len(lines)-1], end)
	}
	exact := strings.Repeat("E", 100) + "\n"
	var l0 Line
	ReadLines(strings.NewReader(exact), "p", 100, true, func(l Line) { l0 = l; l0.Data = bytes.Clone(l.Data) })
	if l0.Truncated || len(l0.Data) != 100 {
		t.Fatalf("a line of exactly maxLine: truncated %v, %d bytes", l0.Truncated, len(l0.Data))
	}
	if _, err := ReadLines(errReader{}, "p", 0, true, func(Line) {}); err == nil {
		t.Fatal("a read error was not returned")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// NewPipeline fills zero settings with the documented defaults and keeps
// the in-flight bound at two batches at least.
func TestNewPipelineDefaults(t *testing.T) {
	if _, err := NewPipeline(PipelineConfig{}); err == nil {
		t.Fatal("no output accepted")
	}
	p, err := NewPipeline(PipelineConfig{Outputs: []Output{nopOutput{}}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	if c.BatchSize != 1024 || c.FlushInterval != 200*time.Millisecond || c.MaxInFlight != 4*1024 || c.MaxInFlightBytes != 8<<20 ||
		c.Workers != 1 || c.CommitInterval != time.Second || c.ShutdownTimeout != 10*time.Second ||
		c.RetryInitial != 250*time.Millisecond || c.RetryMax != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	p, _ = NewPipeline(PipelineConfig{Outputs: []Output{nopOutput{}}, BatchSize: 100, MaxInFlight: 150, RetryInitial: time.Minute, RetryMax: time.Second})
	if p.cfg.MaxInFlight != 200 || p.cfg.RetryMax < p.cfg.RetryInitial {
		t.Fatalf("max_in_flight %d (want two batches, 200), retry max %v below initial %v", p.cfg.MaxInFlight, p.cfg.RetryMax, p.cfg.RetryInitial)
	}
	p, _ = NewPipeline(PipelineConfig{Outputs: []Output{nopOutput{}}, RetryInitial: time.Second, RetryMax: time.Second})
	if p.cfg.RetryMax != time.Second {
		t.Fatalf("retry max equal to initial changed to %v", p.cfg.RetryMax)
	}
	p, _ = NewPipeline(PipelineConfig{Outputs: []Output{nopOutput{}}, BatchSize: 1, MaxInFlight: 2, Workers: 3, MaxInFlightBytes: 1})
	if p.cfg.BatchSize != 1 || p.cfg.MaxInFlight != 2 || p.outs[0].conc.floor != 3 || p.outs[0].conc.ceil != 3 || p.cfg.MaxInFlightBytes != 1 {
		t.Fatalf("explicit settings changed: %+v", p.cfg)
	}
}

type nopOutput struct{}

func (nopOutput) Name() string                          { return "nop" }
func (nopOutput) Write(context.Context, []*Event) error { return nil }
func (nopOutput) Close() error                          { return nil }
