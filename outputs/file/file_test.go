package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/tmpfs"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func TestConformance(t *testing.T) {
	var path string
	outputtest.Run(t, outputtest.Harness{
		New: func(t *testing.T) auditlogin.Output {
			path = filepath.Join(t.TempDir(), "events.ndjson")
			o, err := New(Config{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			return o
		},
		ReadBack: func(t *testing.T, want int) [][]byte { return readLines(t, path) },
	})
}

func TestRotationKeepsEveryEvent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.ndjson")
	o, err := New(Config{Path: path, MaxSize: 4096, MaxFiles: 100})
	if err != nil {
		t.Fatal(err)
	}
	evs := outputtest.Events(500, "r")
	for i := 0; i < len(evs); i += 50 {
		if err := o.Write(context.Background(), evs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + ".*")
	if len(files) < 5 {
		t.Fatalf("expected several rotated files, got %v", files)
	}
	seen := map[string]bool{}
	for _, f := range append(files, path) {
		fi, _ := os.Stat(f)
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, over MaxSize", f, fi.Size())
		}
		for _, l := range readLines(t, f) {
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatalf("%s: invalid JSON line %q", f, l)
			}
			seen[m["id"].(string)] = true
		}
	}
	if len(seen) != len(evs) {
		t.Fatalf("found %d distinct events across files, want %d", len(seen), len(evs))
	}
}

func TestRotationKeepsMaxFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	o, err := New(Config{Path: path, MaxSize: 1024, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range outputtest.Events(100, "m") {
		o.Write(context.Background(), []*auditlogin.Event{ev})
	}
	o.Close()
	files, _ := filepath.Glob(path + ".*")
	if len(files) != 2 {
		t.Fatalf("want 2 rotated files, got %v", files)
	}
}

func TestDeadLetter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead.ndjson")
	d, err := NewDeadLetter(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ev := outputtest.Events(1, "d")[0]
	entries := []auditlogin.DeadLetterEntry{
		{Path: "/a.log", Offset: 10, Reason: "bad ts", Raw: []byte(`{"ts":"x"`)},
		{Path: "/a.log", Offset: 20, Reason: "binary", Raw: []byte{0xff, 0xfe, '"'}},
		{Path: "/a.log", Offset: 30, Reason: "mapping", Output: "elasticsearch", Event: ev},
	}
	for _, e := range entries {
		if err := d.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %d", len(lines))
	}
	var recs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, m)
	}
	if recs[0]["raw"] != `{"ts":"x"` || recs[0]["log"].(map[string]any)["offset"].(float64) != 10 {
		t.Errorf("raw or offset not kept: %v", recs[0])
	}
	if recs[1]["raw_base64"] != "//4i" {
		t.Errorf("invalid UTF-8 must be kept as base64: %v", recs[1])
	}
	if recs[2]["output"] != "elasticsearch" || recs[2]["event"].(map[string]any)["id"] != ev.ID {
		t.Errorf("refused event not kept: %v", recs[2])
	}
}

// A full disk: the failed write is undone (no partial record left on disk),
// the output reports the error for the pipeline to retry, and once space is
// back the retry writes the batch whole, once. No restart needed.
func TestDiskFullIsUndoneAndRecovers(t *testing.T) {
	dir := tmpfs.Mount(t, 256<<10)
	path := filepath.Join(dir, "events.ndjson")
	o, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	first := outputtest.Events(10, "before")
	if err := o.Write(ctx, first); err != nil {
		t.Fatal(err)
	}
	free := tmpfs.Fill(t, dir, 2000) // room for a few records, not a batch
	batch := outputtest.Events(200, "full")
	if err := o.Write(ctx, batch); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ENOSPC", err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasSuffix(data, []byte("\n")) || bytes.Count(data, []byte("\n")) != 10 {
		t.Fatalf("after the failed write the file holds %d lines (ends with newline: %v), want the 10 before it",
			bytes.Count(data, []byte("\n")), bytes.HasSuffix(data, []byte("\n")))
	}
	if err := o.Write(ctx, batch); err == nil {
		t.Fatal("second write on a full disk succeeded")
	}
	free()
	if err := o.Write(ctx, batch); err != nil {
		t.Fatalf("write after space came back: %v", err)
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	want := append(append([]*auditlogin.Event{}, first...), batch...)
	if len(lines) != len(want) {
		t.Fatalf("file holds %d lines, want %d", len(lines), len(want))
	}
	for i, ev := range want {
		if lines[i] != string(ev.Encoded) {
			t.Fatalf("line %d: %s\nwant %s", i, lines[i], ev.Encoded)
		}
	}
}

// A partial last line (left by a crash or a full disk) is removed when the
// file is opened, so the next record does not glue onto it.
func TestOpenDropsAPartialLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	os.WriteFile(path, []byte("{\"a\":1}\n{\"b\":2}\n{\"c\":"), 0o640)
	o, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	evs := outputtest.Events(1, "x")
	if err := o.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	o.Close()
	data, _ := os.ReadFile(path)
	if want := "{\"a\":1}\n{\"b\":2}\n" + string(evs[0].Encoded) + "\n"; string(data) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", data, want)
	}
}
