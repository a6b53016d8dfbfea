package parser

import (
	"os"
	"path/filepath"
	"testing"
)

// Every sample is detected as the format of its directory.
func TestDetectSamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.log")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if got, want := Detect(data), filepath.Base(filepath.Dir(f)); got != want {
			t.Errorf("%s detected as %q, want %q", f, got, want)
		}
	}
	for name, s := range map[string]string{"empty": "", "prose": "hello world\nthis is not a log\n", "csv": "a,b,c\n1,2,3\n"} {
		if got := Detect([]byte(s)); got != "" {
			t.Errorf("%s detected as %q", name, got)
		}
	}
}
