package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/schollz/progressbar/v3"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/parser"
	"github.com/auditlogin/auditlogin/report"
)

const reportUsage = `usage: auditlogin report [flags] [FILE...]

Reads events (stdin without FILE) and answers: connections and failures per
server and per hour, top sources, root logins by source, connections without
credentials by source, accounts (logins, failures, distinct sources, first and
last seen), failed logins by account and by source, and stale accounts.

FILEs are the agent's NDJSON output, or raw logs in a supported format: each
file's first line tells which (--input forces it).
Stale accounts need the list of accounts: --mysql-dsn (reads mysql.user) or
--accounts FILE (user@host lines).
`

// cmdReport streams files into a report.
func cmdReport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "text", "output: "+strings.Join(report.Formats, ", "))
	input := fs.String("input", "auto", "input: auto, ndjson, or a log format ("+strings.Join(parser.Formats(), ", ")+")")
	tz := fs.String("timezone", "Local", "zone of raw logs' local timestamps")
	staleAfter := fs.String("stale-after", "7d", "an account with no successful login this long before the end is stale (7d, 36h, 2w)")
	until := fs.String("until", "", "the report's end (RFC 3339); default: the latest event")
	accounts := fs.String("accounts", "", "file of accounts to check for staleness, one user@host a line")
	dsn := fs.String("mysql-dsn", "", "read the accounts from mysql.user on this server (e.g. root:pass@tcp(127.0.0.1:3306)/)")
	topN := fs.Int("top", 20, "rows of the top lists")
	out := fs.String("o", "", "write the report to this file instead of stdout")
	esURL := fs.String("es", "", "read from Elasticsearch at this URL (aggregations, no scan) instead of files; user:password@ in the URL for basic auth")
	esIndex := fs.String("index", "auditlogin-*", "with --es: the index pattern")
	esKeyEnv := fs.String("es-api-key-env", "", "with --es: the environment variable holding an API key")
	fs.Usage = func() { fmt.Fprint(stderr, reportUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "auditlogin report: "+format+"\n", a...)
		return exitConfig
	}
	okFormat := false
	for _, f := range report.Formats {
		okFormat = okFormat || f == *format
	}
	if !okFormat {
		return fail("--format: %q (expected one of: %s)", *format, strings.Join(report.Formats, ", "))
	}
	if *input != "auto" && *input != "ndjson" && !parser.Known(*input) {
		return fail("--input: %q (expected auto, ndjson or one of: %s)", *input, strings.Join(parser.Formats(), ", "))
	}
	loc, err := config.LoadLocation(*tz)
	if err != nil {
		return fail("--timezone: %v", err)
	}
	opt := report.Options{Top: *topN}
	if opt.StaleAfter, err = report.ParseDuration(*staleAfter); err != nil || opt.StaleAfter <= 0 {
		return fail("--stale-after: %q (expected a duration such as 7d, 36h or 2w)", *staleAfter)
	}
	if *until != "" {
		if opt.Until, err = time.Parse(time.RFC3339, *until); err != nil {
			return fail("--until: %v (expected RFC 3339, such as 2026-11-25T00:00:00Z)", err)
		}
	}
	if *accounts != "" {
		opt.CheckStale = true
		if opt.Accounts, err = readAccounts(*accounts); err != nil {
			return fail("--accounts: %v", err)
		}
	}
	if *dsn != "" {
		opt.CheckStale = true
		accs, excluded, err := mysqlAccounts(*dsn)
		if err != nil {
			return fail("--mysql-dsn: %v", err)
		}
		opt.Accounts = append(opt.Accounts, accs...)
		opt.Excluded = append(opt.Excluded, excluded...)
	}
	var rep *report.Report
	status := exitOK
	if *esURL != "" {
		if fs.NArg() > 0 {
			return fail("--es reads from Elasticsearch: give no files")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if rep, err = esReport(ctx, *esURL, *esIndex, *esKeyEnv, opt); err != nil {
			fmt.Fprintf(stderr, "auditlogin report: %v\n", err)
			return exitFail
		}
	} else {
		agg := report.New(opt)
		files := fs.Args()
		if len(files) == 0 {
			files = []string{"-"}
		}
		for _, name := range files {
			if err := readEvents(name, stdin, stderr, *input, parser.Options{Location: loc, Pasted: true}, agg); err != nil {
				fmt.Fprintf(stderr, "auditlogin report: %s: %v\n", name, err)
				status = exitFail
			}
		}
		rep = agg.Report()
	}
	if status != exitOK {
		// An input could not be read: no report (it would look complete),
		// and -o keeps what it held.
		fmt.Fprintln(stderr, "auditlogin report: no report written: an input could not be read")
		return status
	}
	if *out == "" {
		bw := bufio.NewWriter(stdout)
		if err := report.Render(bw, rep, *format); err != nil {
			fmt.Fprintf(stderr, "auditlogin report: %v\n", err)
			return exitFail
		}
		if err := bw.Flush(); err != nil {
			fmt.Fprintf(stderr, "auditlogin report: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	// -o: written whole to a temporary file beside it, renamed over it only
	// once complete.
	var buf bytes.Buffer
	if err := report.Render(&buf, rep, *format); err != nil {
		fmt.Fprintf(stderr, "auditlogin report: %v\n", err)
		return exitFail
	}
	if err := auditlogin.WriteFileAtomic(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintf(stderr, "auditlogin report: -o: %v\n", err)
		return exitFail
	}
	return exitOK
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// readEvents adds the events of one file to agg, with a progress bar on a
// terminal (never in a pipe).
func readEvents(name string, stdin io.Reader, stderr io.Writer, input string, popts parser.Options, agg *report.Aggregator) error {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
		if fi, err := f.Stat(); err == nil && isTerminal(stderr) && fi.Size() > 8<<20 {
			bar := progressbar.NewOptions64(fi.Size(), progressbar.OptionSetWriter(stderr),
				progressbar.OptionSetDescription("reading "+name), progressbar.OptionShowBytes(true),
				progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
			defer bar.Finish()
			pr := progressbar.NewReader(f, bar)
			r = &pr
		}
	}
	br := bufio.NewReaderSize(r, 256<<10)
	if input == "auto" {
		input = detect(br)
		if input == "" {
			return fmt.Errorf("matches no known log format (%s) and is not the agent's NDJSON", strings.Join(parser.Formats(), ", "))
		}
	}
	if input == "ndjson" {
		return readNDJSON(name, br, stderr, agg)
	}
	p, err := parser.New(input, popts)
	if err != nil {
		return err
	}
	rejected := 0
	emit := func(rec auditlogin.Record) {
		if rec.Err != nil {
			rejected++
			return
		}
		if rec.Event != nil {
			rec.Event.Normalize()
			agg.Add(rec.Event)
		}
	}
	_, err = auditlogin.ReadLines(br, name, 0, true, func(l auditlogin.Line) { p.Feed(l, emit) })
	if f, ok := p.(auditlogin.Flusher); ok {
		f.Flush(emit)
	}
	if rejected > 0 {
		fmt.Fprintf(stderr, "auditlogin report: %s: %d record(s) not parsed (auditlogin parse shows them)\n", name, rejected)
	}
	return err
}

// detect tells the agent's NDJSON (an event with @timestamp and id) from a
// raw log (audit_login, the default).
func detect(br *bufio.Reader) string {
	head, _ := br.Peek(64 << 10)
	for _, line := range bytes.Split(head, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if bytes.HasPrefix(line, []byte(`{"@timestamp":`)) {
			return "ndjson"
		}
		break
	}
	return parser.Detect(head)
}

// ndjsonEvent is what a report reads of an event.
type ndjsonEvent struct {
	Timestamp time.Time `json:"@timestamp"`
	Type      string    `json:"type"`
	MyHost    string    `json:"myhost"`
	User      *string   `json:"user"`
	PrivUser  *string   `json:"priv_user"`
	Host      *string   `json:"host"`
	IP        *string   `json:"ip"`
}

func nullable(p *string) auditlogin.NullString {
	if p == nil {
		return auditlogin.Null
	}
	return auditlogin.Str(*p)
}

func readNDJSON(name string, br *bufio.Reader, stderr io.Writer, agg *report.Aggregator) error {
	bad := 0
	var ev ndjsonEvent
	_, err := auditlogin.ReadLines(br, name, 0, true, func(l auditlogin.Line) {
		if len(bytes.TrimSpace(l.Data)) == 0 {
			return
		}
		ev = ndjsonEvent{}
		if err := json.Unmarshal(l.Data, &ev); err != nil || ev.Timestamp.IsZero() || ev.Type == "" {
			bad++
			if bad <= 5 {
				fmt.Fprintf(stderr, "%s:%d: not an event\n", name, l.Pos.Offset)
			}
			return
		}
		agg.Add(&auditlogin.Event{Timestamp: ev.Timestamp, Type: ev.Type, MyHost: ev.MyHost,
			User: nullable(ev.User), PrivUser: nullable(ev.PrivUser), Host: nullable(ev.Host), IP: nullable(ev.IP)})
	})
	if bad > 0 {
		fmt.Fprintf(stderr, "auditlogin report: %s: %d line(s) were not events\n", name, bad)
	}
	return err
}

// readAccounts reads user@host lines ('user'@'host' too); # starts a comment.
func readAccounts(path string) ([]report.Account, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []report.Account
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := strings.LastIndexByte(line, '@')
		if at < 0 {
			return nil, fmt.Errorf("line %d: %q is not user@host", i+1, line)
		}
		unq := func(s string) string { return strings.Trim(strings.TrimSpace(s), "'`\"") }
		out = append(out, report.Account{User: unq(line[:at]), Host: unq(line[at+1:])})
	}
	return out, nil
}

// systemAccounts are created by the server for itself: no one logs in with
// them (MariaDB's mariadb.sys, MySQL's mysql.sys, mysql.session,
// mysql.infoschema; Debian's mysql@localhost, reached only through the
// unix socket by the OS user mysql for maintenance).
var systemAccounts = map[string]bool{"mariadb.sys": true, "mysql.sys": true, "mysql.session": true, "mysql.infoschema": true}

// mysqlAccounts reads the accounts to check for staleness from mysql.user,
// and the ones left out with why: roles, locked accounts (ACCOUNT LOCK)
// and system accounts.
func mysqlAccounts(dsn string) ([]report.Account, []report.Excluded, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, nil, err
	}
	cfg.Timeout = 10 * time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// MariaDB 10.4+: roles in mysql.user.is_role, the lock in
	// mysql.global_priv's JSON. MySQL: mysql.user.account_locked, no roles
	// column. Older servers: neither.
	queries := []string{
		"SELECT u.User, u.Host, u.is_role = 'Y', IFNULL(JSON_VALUE(g.Priv, '$.account_locked'), 0) = 1 FROM mysql.user u LEFT JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host WHERE u.User <> ''",
		"SELECT User, Host, 0, account_locked = 'Y' FROM mysql.user WHERE User <> ''",
		"SELECT User, Host, 0, 0 FROM mysql.user WHERE User <> ''",
	}
	var rows *sql.Rows
	for _, q := range queries {
		rows, err = db.QueryContext(ctx, q)
		var merr *mysql.MySQLError
		if errors.As(err, &merr) && (merr.Number == 1054 || merr.Number == 1146 || merr.Number == 1305) {
			continue // unknown column, table or function: an older or other server
		}
		break
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading mysql.user: %w", err)
	}
	defer rows.Close()
	var out []report.Account
	var excluded []report.Excluded
	for rows.Next() {
		var a report.Account
		var role, locked bool
		if err := rows.Scan(&a.User, &a.Host, &role, &locked); err != nil {
			return nil, nil, err
		}
		switch {
		case role:
			excluded = append(excluded, report.Excluded{User: a.User, Host: a.Host, Reason: "role"})
		case systemAccounts[a.User] || a.User == "mysql" && a.Host == "localhost":
			excluded = append(excluded, report.Excluded{User: a.User, Host: a.Host, Reason: "system account"})
		case locked:
			excluded = append(excluded, report.Excluded{User: a.User, Host: a.Host, Reason: "locked (ACCOUNT LOCK)"})
		default:
			out = append(out, a)
		}
	}
	return out, excluded, rows.Err()
}
