// Package samples gives tests the announcement's 11 audit_login records
// (examples/audit_login.log, valid JSON) as events, mapped as the
// audit_login parser maps them, for packages that cannot import the parser.
package samples

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Announcement returns the sample's events (ts read as UTC).
func Announcement(t testing.TB) []*auditlogin.Event {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(here), "..", "..", "examples", "audit_login.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ns := func(s string) auditlogin.NullString {
		if s == "(null)" {
			return auditlogin.Null
		}
		return auditlogin.Str(s)
	}
	var evs []*auditlogin.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]string
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse("2006-01-02 15:04:05", r["ts"])
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, &auditlogin.Event{Timestamp: ts, TS: r["ts"], Type: r["type"], MyHost: r["myhost"],
			Thread: r["thread"], User: ns(r["user"]), PrivUser: ns(r["priv_user"]), Host: ns(r["host"]), IP: ns(r["ip"])})
	}
	return evs
}
