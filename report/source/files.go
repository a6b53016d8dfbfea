// Package source reads what a report is made from: the agent's NDJSON and
// raw logs (File), a fleet's Elasticsearch by aggregations (Elasticsearch),
// and the accounts to check for staleness (AccountsFile, MySQLAccounts).
// The command line only parses flags and wires these to report.
package source

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/parser"
	"github.com/auditlogin/auditlogin/report"
)

// File adds the events of one input to agg: the agent's NDJSON or a raw
// log in a supported format; input is "auto" (detected from the first
// lines), "ndjson" or a format name. Records that do not parse are counted
// and said on warn; the error is the read's.
func File(name string, r io.Reader, input string, popts parser.Options, agg *report.Aggregator, warn io.Writer) error {
	br := bufio.NewReaderSize(r, 256<<10)
	if input == "auto" {
		input = Detect(br)
		if input == "" {
			return fmt.Errorf("matches no known log format (%s) and is not the agent's NDJSON", strings.Join(parser.Formats(), ", "))
		}
	}
	if input == "ndjson" {
		return readNDJSON(name, br, warn, agg)
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
		fmt.Fprintf(warn, "auditlogin report: %s: %d record(s) not parsed (auditlogin parse shows them)\n", name, rejected)
	}
	return err
}

// Detect tells the agent's NDJSON (a line starting with its @timestamp)
// from a raw log, whose format parser.Detect names ("" if none).
func Detect(br *bufio.Reader) string {
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

// seedEvent is what a report reads of an event in the seed's schema: a
// decode of these fields alone is the fast path (an event in another schema
// fails it, its user or host being an object, and is read by DecodeEvent).
type seedEvent struct {
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
	seed := true // until a line says otherwise
	var se seedEvent
	_, err := auditlogin.ReadLines(br, name, 0, true, func(l auditlogin.Line) {
		if len(bytes.TrimSpace(l.Data)) == 0 {
			return
		}
		// Shipped events in any schema (auditlogin, ecs, both).
		if seed {
			se = seedEvent{}
			if json.Unmarshal(l.Data, &se) == nil && se.Type != "" && !se.Timestamp.IsZero() {
				agg.Add(&auditlogin.Event{Timestamp: se.Timestamp, Type: se.Type, MyHost: se.MyHost,
					User: nullable(se.User), PrivUser: nullable(se.PrivUser), Host: nullable(se.Host), IP: nullable(se.IP)})
				return
			}
		}
		ev, err := auditlogin.DecodeEvent(l.Data)
		if err == nil && !ev.Timestamp.IsZero() && ev.Type != "" {
			seed = false // an ECS (or both) file: the general reader from here on
		}
		if err != nil || ev.Timestamp.IsZero() || ev.Type == "" {
			bad++
			if bad <= 5 {
				fmt.Fprintf(stderr, "%s:%d: not an event\n", name, l.Pos.Offset)
			}
			return
		}
		agg.Add(ev)
	})
	if bad > 0 {
		fmt.Fprintf(stderr, "auditlogin report: %s: %d line(s) were not events\n", name, bad)
	}
	return err
}

// AccountsFile reads user@host lines ('user'@'host' too); # starts a comment.
func AccountsFile(path string) ([]report.Account, error) {
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

// MySQLAccounts reads the accounts to check for staleness from mysql.user,
// and the ones left out with why: roles, locked accounts (ACCOUNT LOCK)
// and system accounts.
func MySQLAccounts(dsn string) ([]report.Account, []report.Excluded, error) {
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
