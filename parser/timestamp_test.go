package parser

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
)

// writers print one login record at wall-clock time t (in the server's
// zone) the way each server's own printf does, with the padding it uses.
var writers = map[string]func(t time.Time) []string{
	// audit_login.c: "%04d-%02d-%02d %02d:%02d:%02d"
	"audit_login": func(t time.Time) []string {
		return []string{fmt.Sprintf(`{"ts":"%04d-%02d-%02d %02d:%02d:%02d","type":"successful_login","myhost":"h","thread":"7","user":"u","priv_user":"u","host":"c","ip":"10.0.0.1"}`,
			t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
	// server_audit.c (file): "%04d%02d%02d %02d:%02d:%02d,"
	"mariadb_audit file": func(t time.Time) []string {
		return []string{fmt.Sprintf("%04d%02d%02d %02d:%02d:%02d,h,u,10.0.0.1,7,0,CONNECT,,,0",
			t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
	// syslog(3) header: "%s %2d %02d:%02d:%02d" (day padded with a space)
	"mariadb_audit syslog": func(t time.Time) []string {
		return []string{fmt.Sprintf("%s %2d %02d:%02d:%02d vm mysql-server_auditing: h,u,10.0.0.1,7,0,CONNECT,,,0",
			t.Month().String()[:3], t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
	// MariaDB general log (log.cc): "%02d%02d%02d %2d:%02d:%02d\t" (hour padded with a space)
	"general_log mariadb": func(t time.Time) []string {
		return []string{fmt.Sprintf("%02d%02d%02d %2d:%02d:%02d\t    7 Connect\tu@10.0.0.1 on  using TCP/IP", t.Year()%100, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second()),
			"\t\t    7 Query\tselect 1"}
	},
	// MariaDB error log (my_print_error / sql_print_warning): "%04d-%02d-%02d %2d:%02d:%02d "
	"error_log mariadb": func(t time.Time) []string {
		return []string{fmt.Sprintf("%04d-%02d-%02d %2d:%02d:%02d 7 [Warning] Access denied for user 'u'@'10.0.0.1' (using password: YES)",
			t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
	// MySQL 5.5 / old MariaDB error log: "%02d%02d%02d %2d:%02d:%02d "
	"error_log mysql55": func(t time.Time) []string {
		return []string{fmt.Sprintf("%02d%02d%02d %2d:%02d:%02d [Warning] Access denied for user 'u'@'10.0.0.1' (using password: YES)",
			t.Year()%100, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
	// MySQL Enterprise Audit JSON, one record a line as 8.0 writes it
	"mysql_enterprise_audit": func(t time.Time) []string {
		return []string{fmt.Sprintf(`{ "timestamp": "%04d-%02d-%02d %02d:%02d:%02d", "id": 0, "class": "connection", "event": "connect", "connection_id": 7, "account": { "user": "u", "host": "c" }, "login": { "user": "u", "os": "", "ip": "10.0.0.1", "proxy": "" }, "connection_data": { "connection_type": "tcp/ip", "status": 0, "db": "" } },`,
			t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
	// Percona audit log, JSON (local time, no zone, as audit_log_format=JSON writes it)
	"percona_audit": func(t time.Time) []string {
		return []string{fmt.Sprintf(`{"audit_record":{"name":"Connect","record":"1_x","timestamp":"%04d-%02d-%02dT%02d:%02d:%02d","connection_id":"7","status":0,"user":"u","priv_user":"u","os_login":"","proxy_user":"","host":"c","ip":"10.0.0.1","db":""}}`,
			t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())}
	},
}

// formatOf is the parser of each writer.
func formatOf(writer string) string { return strings.Fields(writer)[0] }

// parseLines feeds lines to a parser of format and returns its events and
// rejections.
func parseLines(t *testing.T, format string, o Options, lines []string) ([]*auditlogin.Event, []error) {
	t.Helper()
	p, err := New(format, o)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*auditlogin.Event
	var errs []error
	emit := func(r auditlogin.Record) {
		if r.Event != nil {
			evs = append(evs, r.Event)
		}
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	off := int64(0)
	for _, l := range lines {
		p.Feed(auditlogin.Line{Data: []byte(l), Pos: auditlogin.Position{Path: "t.log", Offset: off, End: off + int64(len(l)) + 1}}, emit)
		off += int64(len(l)) + 1
	}
	if f, ok := p.(auditlogin.Flusher); ok {
		f.Flush(emit)
	}
	return evs, errs
}

// Every format reads its own timestamps at every hour of the day, on every
// day of a leap year and a common year, across month and year ends, in the
// zone it is told, whatever the clock of the machine running the test.
func TestEveryFormatAtEveryHourAndDay(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	for writer, write := range writers {
		for _, loc := range []*time.Location{time.UTC, berlin} {
			for _, year := range []int{2024, 2026} {
				var lines []string
				var want []time.Time
				for day := time.Date(year, 1, 1, 0, 0, 0, 0, loc); day.Year() == year; day = day.AddDate(0, 0, 1) {
					for h := 0; h < 24; h++ {
						wall := time.Date(day.Year(), day.Month(), day.Day(), h, (day.YearDay()*7+h)%60, (h*13+day.Day())%60, 0, loc)
						if wall.Hour() != h {
							continue // the hour skipped in spring: no server writes it
						}
						lines = append(lines, write(wall)...)
						want = append(want, wall)
					}
				}
				now := time.Date(year, 12, 31, 23, 59, 59, 0, loc) // for syslog's missing year
				evs, errs := parseLines(t, formatOf(writer), Options{Location: loc, MyHost: "h", Now: func() time.Time { return now }}, lines)
				if len(errs) > 0 {
					t.Fatalf("%s %s %d: %d rejected, first: %v", writer, loc, year, len(errs), errs[0])
				}
				if len(evs) != len(want) {
					t.Fatalf("%s %s %d: %d events for %d records", writer, loc, year, len(evs), len(want))
				}
				for i, ev := range evs {
					w := want[i]
					// In the repeated hour of autumn the first occurrence is read.
					if _, off := w.Zone(); loc != time.UTC {
						if first, err := wallClock(w.Year(), int(w.Month()), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc); err == nil {
							_, foff := first.Zone()
							if foff != off {
								w = first
							}
						}
					}
					if !ev.Timestamp.Equal(w) {
						t.Fatalf("%s %s: record %d (%q) read as %v, want %v", writer, loc, i, lines[i], ev.Timestamp, w.UTC())
					}
				}
			}
		}
	}
}

// The year ends and begins within a second, and a leap day is read as that
// day, in every format.
func TestYearEndAndLeapDay(t *testing.T) {
	for writer, write := range writers {
		for _, w := range []time.Time{
			time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2024, 2, 29, 0, 0, 1, 0, time.UTC), time.Date(2024, 2, 29, 9, 5, 7, 0, time.UTC),
		} {
			now := w.Add(time.Minute)
			evs, errs := parseLines(t, formatOf(writer), Options{Location: time.UTC, MyHost: "h", Now: func() time.Time { return now }}, write(w))
			if len(errs) > 0 || len(evs) != 1 || !evs[0].Timestamp.Equal(w) {
				t.Fatalf("%s at %v: events %v, errors %v", writer, w, evs, errs)
			}
		}
	}
}

// Impossible dates and times are rejected with a reason, never carried into
// the next day or month.
func TestImpossibleTimestampsAreRejected(t *testing.T) {
	bad := map[string][]string{
		"audit_login": {
			`{"ts":"2026-02-29 10:00:00","type":"successful_login","myhost":"h","thread":"7","user":"u","priv_user":"u","host":"c","ip":"10.0.0.1"}`,
			`{"ts":"2026-04-31 10:00:00","type":"successful_login","myhost":"h","thread":"7","user":"u","priv_user":"u","host":"c","ip":"10.0.0.1"}`,
			`{"ts":"2026-12-31 23:59:60","type":"successful_login","myhost":"h","thread":"7","user":"u","priv_user":"u","host":"c","ip":"10.0.0.1"}`,
			`{"ts":"2026-12-31 24:00:00","type":"successful_login","myhost":"h","thread":"7","user":"u","priv_user":"u","host":"c","ip":"10.0.0.1"}`,
		},
		"mariadb_audit": {
			"20260229 10:00:00,h,u,10.0.0.1,7,0,CONNECT,,,0",
			"Feb 29 10:00:00 vm mysql-server_auditing: h,u,10.0.0.1,7,0,CONNECT,,,0",
		},
		"error_log": {
			"2026-02-29  9:00:00 7 [Warning] Access denied for user 'u'@'10.0.0.1' (using password: YES)",
			"2026-13-01 10:00:00 7 [Warning] Access denied for user 'u'@'10.0.0.1' (using password: YES)",
		},
		"mysql_enterprise_audit": {
			`{ "timestamp": "2026-02-29 10:00:00", "id": 0, "class": "connection", "event": "connect", "connection_id": 7, "account": { "user": "u", "host": "c" }, "login": { "user": "u", "os": "", "ip": "10.0.0.1", "proxy": "" }, "connection_data": { "connection_type": "tcp/ip", "status": 0, "db": "" } },`,
		},
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for format, lines := range bad {
		for _, l := range lines {
			evs, errs := parseLines(t, format, Options{Location: time.UTC, MyHost: "h", Now: func() time.Time { return now }}, []string{l})
			if len(evs) != 0 || len(errs) != 1 {
				t.Errorf("%s: %q gave events %v, errors %v; want one rejection", format, l, evs, errs)
			}
		}
	}
}

// The repeated hour when clocks go back is read as its first occurrence.
func TestRepeatedHourIsTheFirstOccurrence(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	got, err := localStamp("2026-10-25 02:30:00", berlin)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("02:30 on the night clocks go back read as %v, want %v (CEST, the first 02:30)", got.UTC(), want)
	}
	got, _ = localStamp("2026-10-25 03:30:00", berlin)
	if want := time.Date(2026, 10, 25, 2, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("03:30 read as %v, want %v", got.UTC(), want)
	}
	got, _ = localStamp("2026-03-29 02:30:00", berlin) // skipped: shifted forward by the gap
	if want := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("02:30 in the spring gap read as %v, want %v", got.UTC(), want)
	}
}

// Format auto recognizes each writer's lines at any hour.
func TestDetectAtEveryHour(t *testing.T) {
	for writer, write := range writers {
		for h := 0; h < 24; h++ {
			w := time.Date(2026, 12, 1, h, 4, 5, 0, time.UTC)
			head := strings.Join(write(w), "\n") + "\n"
			if got, want := Detect([]byte(head)), formatOf(writer); got != want {
				t.Fatalf("%s at %02d:04:05: detected %q, want %q\n%s", writer, h, got, want, head)
			}
		}
	}
}

// docs/formats.md: one failed login in the error log and in the general log
// gives two ids (each hashes the record as its log wrote it).
func TestErrorLogAndGeneralLogIDsDiffer(t *testing.T) {
	o := Options{Location: time.UTC, MyHost: "h"}
	el, _ := parseLines(t, "error_log", o, []string{"2026-12-01  0:47:48 7 [Warning] Access denied for user 'u'@'10.0.0.1' (using password: YES)"})
	gl, _ := parseLines(t, "general_log", o, []string{"261201  0:47:48\t    7 Connect\tu@10.0.0.1 on  using TCP/IP",
		"\t\t    7 Connect\tAccess denied for user 'u'@'10.0.0.1' (using password: YES)"})
	if len(el) != 1 || len(gl) != 1 {
		t.Fatalf("events: error log %d, general log %d", len(el), len(gl))
	}
	if !el[0].Timestamp.Equal(gl[0].Timestamp) || el[0].Type != gl[0].Type || el[0].User != gl[0].User {
		t.Fatalf("not the same login: %+v / %+v", el[0], gl[0])
	}
	if el[0].ComputeID() == gl[0].ComputeID() {
		t.Fatal("same id: docs/formats.md says they differ")
	}
}

// MySQL 8.0's Enterprise Audit file, one record a line, with or without the
// array's opening bracket on the first line, is detected and parsed.
func TestEnterpriseOneRecordALine(t *testing.T) {
	rec := `{ "timestamp": "2026-12-01 00:47:48", "id": 0, "class": "connection", "event": "connect", "connection_id": 7, "account": { "user": "u", "host": "c" }, "login": { "user": "u", "os": "", "ip": "10.0.0.1", "proxy": "" }, "connection_data": { "connection_type": "tcp/ip", "status": 0, "db": "" } },`
	for _, head := range []string{rec + "\n" + rec + "\n", "[\n" + rec + "\n", "[" + rec + "\n"} {
		if got := Detect([]byte(head)); got != FormatEnterpriseAudit {
			t.Errorf("detected %q for:\n%s", got, head)
		}
	}
	evs, errs := parseLines(t, FormatEnterpriseAudit, Options{Location: time.UTC, MyHost: "h"}, []string{"[", rec, rec})
	if len(evs) != 2 || len(errs) != 0 || evs[0].User.S != "u" {
		t.Fatalf("events %v, errors %v", evs, errs)
	}
}

// Stamps with fields of the wrong width or the wrong padding are not read
// as times: each server writes fixed widths.
func TestMalformedStampsAreRejected(t *testing.T) {
	for _, s := range []string{
		"2026-1-01 10:00:00", "2026-01-1 10:00:00", "26-01-01 10:00:00", "202601011 10:00:00",
		"2026-12-01  10:00:00", // two spaces only before a one-digit hour
		"2026-12-01 10:0:00", "2026-12-01 10:00:0", "2026-12-01 100:00:00", "2026-12-01 10:00:00.",
		"2026-12-01T10:00:00Z", "2026-12-01 10:00:00 ", "20261201 1000:00", "",
	} {
		if got, err := localStamp(s, time.UTC); err == nil {
			t.Errorf("%q read as %v", s, got)
		}
	}
	for s, want := range map[string]time.Time{
		"2026-12-01  9:00:00":        time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		"2026-12-01 09:00:00.5":      time.Date(2026, 12, 1, 9, 0, 0, 5e8, time.UTC),
		"2026-12-01 09:00:00.123456": time.Date(2026, 12, 1, 9, 0, 0, 123456e3, time.UTC),
		"261201 23:59:59":            time.Date(2026, 12, 1, 23, 59, 59, 0, time.UTC),
		"20261201 00:00:00":          time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := localStamp(s, time.UTC); err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"Dec  x 10:00:00", "Dec 1x 10:00:00", "Dec 01 1a:00:00", "Dex 01 10:00:00", "Dec 01 10:00:0"} {
		if _, err := syslogTime(s, time.UTC, time.Now()); err == nil {
			t.Errorf("syslog %q accepted", s)
		}
	}
}

// A syslog stamp has no year: up to a day ahead of the clock is this year
// (a server clock slightly ahead), further ahead is last year.
func TestSyslogYear(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for s, want := range map[string]int{"Dec  1 20:00:00": 2026, "Dec  2 09:00:00": 2026, "Dec  3 10:00:00": 2025, "Jan  5 10:00:00": 2026, "Dec 31 10:00:00": 2025} {
		got, err := syslogTime(s, time.UTC, now)
		if err != nil || got.Year() != want {
			t.Errorf("%q at %v: year %d (%v), want %d", s, now, got.Year(), err, want)
		}
	}
}
