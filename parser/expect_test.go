package parser

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Expectations written by hand from each sample and the mapping rules in
// docs/formats.md, independently of the parsers' own output (the golden
// files are that output, rewritten by -update). "~" stands for null.
// Fields: type user priv_user host ip thread myhost ts.
var handExpectations = map[string][]string{
	// username → user (and priv_user on success only: "" on failures and
	// logouts); host → ip when an
	// address, else host; DISCONNECT → logout (Logouts on in feedAll);
	// FAILED_CONNECT with an empty user and 1158 → user null; queries skipped.
	"mariadb_audit/file.log": {
		"logout|root||~|127.0.0.1|55|vm|20261125 19:17:15",
		"successful_login|fmt_u|fmt_u|~|127.0.0.1|56|vm|20261125 19:17:15",
		"logout|fmt_u||~|127.0.0.1|56|vm|20261125 19:17:15",
		"failed_login|fmt_u||~|127.0.0.1|57|vm|20261125 19:17:15",
		"logout|fmt_u||~|127.0.0.1|57|vm|20261125 19:17:15",
		"failed_login|nosuch||~|127.0.0.1|58|vm|20261125 19:17:15",
		"logout|nosuch||~|127.0.0.1|58|vm|20261125 19:17:15",
		"successful_login|root|root|localhost|~|59|vm|20261125 19:17:15",
		"logout|root||localhost|~|59|vm|20261125 19:17:15",
		`failed_login|a,b"c||~|127.0.0.1|60|vm|20261125 19:17:15`,
		`logout|a,b"c||~|127.0.0.1|60|vm|20261125 19:17:15`,
		"failed_login|~|~|~|127.0.0.1|61|vm|20261125 19:17:15",
		"logout|~|~|~|127.0.0.1|61|vm|20261125 19:17:15",
		"successful_login|root|root|~|127.0.0.1|62|vm|20261125 19:17:15",
	},
	"mariadb_audit/syslog.log": {
		"successful_login|fmt_u|fmt_u|~|127.0.0.1|56|vm|Nov 25 19:17:15",
		"failed_login|nosuch||~|127.0.0.1|58|vm|Nov 25 19:17:16",
		`failed_login|a,b"c||~|127.0.0.1|60|vm|Nov 25 19:17:16`,
		"failed_login|~|~|~|127.0.0.1|61|vm|Nov 25 19:17:17",
		"logout|root||localhost|~|59|vm|Nov 25 19:17:18",
	},
	// Connect user@host → a login, failed when the connection's next line
	// is its denial; Quit → logout; host → ip when an address; myhost is
	// the input's (feedAll: testhost); MariaDB repeats no timestamp.
	"general_log/mariadb.log": {
		"logout|~|~|~|~|55|testhost|261125 19:17:15",
		"successful_login|fmt_u|fmt_u|~|127.0.0.1|56|testhost|261125 19:17:15",
		"logout|~|~|~|~|56|testhost|261125 19:17:15",
		"failed_login|fmt_u||~|127.0.0.1|57|testhost|261125 19:17:15",
		"failed_login|nosuch||~|127.0.0.1|58|testhost|261125 19:17:15",
		"successful_login|root|root|localhost|~|59|testhost|261125 19:17:15",
		"logout|~|~|~|~|59|testhost|261125 19:17:15",
		`failed_login|a,b"c||~|127.0.0.1|60|testhost|261125 19:17:15`,
		"successful_login|root|root|~|127.0.0.1|62|testhost|261125 19:17:15",
	},
	"general_log/mysql8.log": {
		"successful_login|app|app|~|10.0.0.7|15|testhost|2026-11-25T10:00:00.123456Z",
		"failed_login|app||~|10.0.0.8|16|testhost|2026-11-25T10:00:01.000002Z", // the denial's time
		"successful_login|root|root|localhost|~|17|testhost|2026-11-25T10:00:02.000000Z",
		"logout|~|~|~|~|17|testhost|2026-11-25T10:00:02.500000Z",
		"successful_login|root|root|db-admin.example|~|18|testhost|2026-11-25T10:00:03.000000Z",
	},
	// Access denied → failed_login, host from the right; Aborted connection
	// without authentication → user null; everything else skipped.
	"error_log/mariadb.log": {
		"failed_login|fmt_u||~|127.0.0.1|57|testhost|2026-11-25 19:17:15",
		"failed_login|nosuch||~|127.0.0.1|58|testhost|2026-11-25 19:17:15",
		`failed_login|a,b"c||~|127.0.0.1|60|testhost|2026-11-25 19:17:15`,
		"failed_login|~|~|~|127.0.0.1|61|testhost|2026-11-25 19:17:15",
	},
	"error_log/mysql8.log": {
		"failed_login|app||~|10.0.0.8|16|testhost|2026-11-25T10:00:01.000002Z",
		"failed_login|nobody||scanner.example|~|21|testhost|2026-11-25T10:00:06.000000Z",
	},
	"error_log/mysql8-json.log": {
		"failed_login|app||~|10.0.0.8|16|testhost|2026-11-25T10:00:01.000002Z",
	},
	// Connect/Change user → login, STATUS 0 successful; Quit → logout;
	// CONNECTION_ID → thread; PRIV_USER on success; HOST/IP empty → null;
	// an empty USER (1156/1158) → user null; no server name in the records.
	"percona_audit/json.log": {
		"successful_login|app|app|web-1.example|10.0.0.21|991|testhost|2024-09-03T01:53:30Z",
		"failed_login|app||web-1.example|10.0.0.21|993|testhost|2024-09-03T01:53:33Z",
		"failed_login|~|~|~|10.0.0.1|994|testhost|2024-09-03T01:53:34Z",
		"logout|app||web-1.example|10.0.0.21|991|testhost|2024-09-03T01:53:35Z",
		`failed_login|x","name":"Connect||~|198.51.100.9|995|testhost|2024-09-03T01:53:36Z`,
	},
	"percona_audit/csv.log": {
		"successful_login|root|root|localhost|~|1|testhost|2014-04-21T12:34:32 UTC",
		"failed_login|a,b||~|192.0.2.6|5|testhost|2014-04-21T12:34:34 UTC",
	},
	"percona_audit/xml-new.log": {
		"successful_login|root|root|localhost|~|1|testhost|2014-04-21T12:34:32 UTC",
		`failed_login|a"b<c||~|192.0.2.4|2|testhost|2014-04-21T12:34:40 UTC`,
	},
	"percona_audit/xml-old.log": {
		"successful_login|root|root|localhost|~|1|testhost|2014-04-21T12:34:32 UTC",
		"failed_login|backup||~|192.0.2.5|3|testhost|2014-04-21T12:34:50 UTC",
	},
	// class connection: connect → login (connection_data.status 0
	// successful), disconnect → logout; login.user → user, account.user →
	// priv_user on success, login.ip → ip, socket → host localhost.
	"mysql_enterprise_audit/json.log": {
		"successful_login|root|root|~|::1|11|testhost|2019-10-03 15:02:32",
		"failed_login|app}||~|10.0.0.33|12|testhost|2019-10-03 15:02:40",
		"successful_login|app|app|localhost|~|13|testhost|2019-10-03 15:02:41",
		"logout|root||~|::1|11|testhost|2019-10-03 15:03:00",
	},
}

func expectField(s auditlogin.NullString) string {
	if !s.Valid {
		return "~"
	}
	return s.S
}

func TestFormatsMatchHandWrittenExpectations(t *testing.T) {
	for file, want := range handExpectations {
		format := strings.Split(file, "/")[0]
		data, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range feedAll(t, format, data, time.UTC) {
			if r.Event == nil {
				continue
			}
			e := r.Event
			got = append(got, strings.Join([]string{e.Type, expectField(e.User), expectField(e.PrivUser),
				expectField(e.Host), expectField(e.IP), e.Thread, e.MyHost, e.TS}, "|"))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n got:\n  %s\nwant:\n  %s", file, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}
