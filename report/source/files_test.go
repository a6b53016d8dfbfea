package source

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin/parser"
	"github.com/auditlogin/auditlogin/report"
)

// The agent's NDJSON and a raw log of the same logins give the same report.
func TestFileReadsNDJSONAndRawLogs(t *testing.T) {
	raw := `{"ts":"2026-11-25 10:00:00","type":"failed_login","myhost":"db","thread":"7","user":"app","priv_user":"","host":"h","ip":"10.0.0.9"}` + "\n"
	nd := `{"@timestamp":"2026-11-25T10:00:00.000Z","ts":"2026-11-25 10:00:00","type":"failed_login","myhost":"db","thread":"7","user":"app","priv_user":"","host":"h","ip":"10.0.0.9","id":"x"}` + "\n"
	for name, in := range map[string]string{"raw": raw, "ndjson": nd} {
		if got := Detect(bufio.NewReader(strings.NewReader(in))); (name == "ndjson") != (got == "ndjson") || got == "" {
			t.Fatalf("%s detected as %q", name, got)
		}
		agg := report.New(report.Options{})
		if err := File(name, strings.NewReader(in), "auto", parser.Options{Location: time.UTC}, agg, os.Stderr); err != nil {
			t.Fatal(err)
		}
		r := agg.Report()
		if r.Totals.Failed != 1 || len(r.FailedBySrc) != 1 || r.FailedBySrc[0].IP != "10.0.0.9" {
			t.Fatalf("%s: %+v", name, r.Totals)
		}
	}
	if err := File("x", strings.NewReader("hello\n"), "auto", parser.Options{}, report.New(report.Options{}), os.Stderr); err == nil {
		t.Fatal("an unknown input is not an error")
	}
}

func TestAccountsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "accounts")
	os.WriteFile(p, []byte("# comment\nweb@%\n'backup'@'10.0.0.%'\n\n"), 0o644)
	accs, err := AccountsFile(p)
	if err != nil || len(accs) != 2 || accs[1] != (report.Account{User: "backup", Host: "10.0.0.%"}) {
		t.Fatalf("%v %v", accs, err)
	}
	os.WriteFile(p, []byte("nohost\n"), 0o644)
	if _, err := AccountsFile(p); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a line without @: %v", err)
	}
}
