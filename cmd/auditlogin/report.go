package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch"
	"github.com/auditlogin/auditlogin/parser"
	"github.com/auditlogin/auditlogin/report"
	"github.com/auditlogin/auditlogin/report/source"
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

--config FILE reads a fleet's Elasticsearch instead, by aggregations, with
the client its outputs.elasticsearch is configured with (hosts, password or
API key from the config, the environment or a file, TLS); --es URL alone
works for a cluster without authentication.
`

// cmdReport streams files into a report.
func cmdReport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	format := fs.String("format", "text", "output: "+strings.Join(report.Formats, ", "))
	input := fs.String("input", "auto", "input: auto, ndjson, or a log format ("+strings.Join(parser.Formats(), ", ")+")")
	tz := fs.String("timezone", "Local", "zone of raw logs' local timestamps")
	staleAfter := fs.String("stale-after", "7d", "an account with no successful login this long before the end is stale (7d, 36h, 2w)")
	until := fs.String("until", "", "the report's end (RFC 3339); default: the latest event")
	accounts := fs.String("accounts", "", "file of accounts to check for staleness, one user@host a line")
	dsn := fs.String("mysql-dsn", "", "read the accounts from mysql.user on this server (e.g. root:pass@tcp(127.0.0.1:3306)/)")
	topN := fs.Int("top", 20, "rows of the top lists")
	out := fs.String("o", "", "write the report to this file instead of stdout")
	esURL := fs.String("es", "", "read from Elasticsearch at this URL (aggregations, no scan) instead of files")
	esIndex := fs.String("index", "", "with --es or --config: the index pattern (default: the output's, auditlogin-*)")
	esKeyEnv := fs.String("es-api-key-env", "", "with --es: the environment variable holding an API key")
	schema := fs.String("schema", "auto", "with --es or --config: the event_schema of the indices (auditlogin, ecs, both); auto: the config's, else what the indices hold. Files of shipped events are read in any schema")
	cfgPath := fs.String("config", "", "read from the Elasticsearch of this config's outputs.elasticsearch, with its client settings (hosts, auth, TLS)")
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
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
		if opt.Accounts, err = source.AccountsFile(*accounts); err != nil {
			return fail("--accounts: %v", err)
		}
	}
	if *dsn != "" {
		opt.CheckStale = true
		accs, excluded, err := source.MySQLAccounts(*dsn)
		if err != nil {
			return fail("--mysql-dsn: %v", err)
		}
		opt.Accounts = append(opt.Accounts, accs...)
		opt.Excluded = append(opt.Excluded, excluded...)
	}
	var rep *report.Report
	status := exitOK
	if *esURL != "" || *cfgPath != "" {
		if fs.NArg() > 0 {
			return fail("--es and --config read from Elasticsearch: give no files")
		}
		out, cfgSchema, err := reportESClient(*cfgPath, *esURL, *esKeyEnv, stderr)
		if err != nil {
			return fail("%v", err)
		}
		var names source.Names // zero: detected from the indices
		switch {
		case *schema != "auto":
			if _, err := auditlogin.ParseSchema(*schema); err != nil {
				return fail("--schema: %q (expected auto, auditlogin, ecs or both)", *schema)
			}
			names = source.NamesFor(*schema)
		case cfgSchema != "":
			names = source.NamesFor(cfgSchema)
		}
		pattern := *esIndex
		if pattern == "" {
			pattern = out.IndexPattern()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if rep, err = source.Elasticsearch(ctx, out.Transport(), pattern, names, opt); err != nil {
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
			if err := readInput(name, stdin, stderr, *input, parser.Options{Location: loc, Pasted: true}, agg); err != nil {
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

// readInput opens one input (stdin for "-") and adds it to agg, with a
// progress bar on a terminal (never in a pipe).
func readInput(name string, stdin io.Reader, stderr io.Writer, input string, popts parser.Options, agg *report.Aggregator) error {
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
	return source.File(name, r, input, popts, agg, stderr)
}

// reportESClient is the Elasticsearch client of a report: the one the
// agent's output uses, from --config (its outputs.elasticsearch: hosts,
// username/password or API key from the config, the environment or a file,
// TLS with a CA file or fingerprint, client certificates), --es overriding
// its hosts; or, with --es alone, that URL (user:password@ in it is taken
// as basic auth, but shows in ps: prefer --config) and --es-api-key-env.
// reportESClient returns the Elasticsearch client to read with and, with
// --config, the config's event_schema ("" otherwise).
func reportESClient(cfgPath, esURL, keyEnv string, stderr io.Writer) (*elasticsearch.Output, string, error) {
	log := newLogger(config.Log{Level: "warn", Format: "text"}, stderr)
	if cfgPath != "" {
		cfg, why, err := loadConfig(cfgPath, stderr)
		if err != nil {
			return nil, "", fmt.Errorf("--config: %v", err)
		}
		e := cfg.Outputs.Elasticsearch
		if e == nil {
			return nil, "", fmt.Errorf("--config: %s has no outputs.elasticsearch", why)
		}
		if esURL != "" {
			c := *e
			c.Hosts = []string{esURL}
			e = &c
		}
		o, err := newESOutput(e, log)
		return o, cfg.EventSchema, err
	}
	u, err := url.Parse(esURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, "", fmt.Errorf("--es: %q is not a URL such as https://es-1:9200", esURL)
	}
	ec := elasticsearch.Config{Hosts: []string{(&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()}}
	if u.User != nil {
		ec.Username = u.User.Username()
		ec.Password, _ = u.User.Password()
	}
	if keyEnv != "" {
		key, ok := os.LookupEnv(keyEnv)
		if !ok {
			return nil, "", fmt.Errorf("--es-api-key-env: variable %s is not set", keyEnv)
		}
		ec.APIKey = key
	}
	o, err := elasticsearch.New(ec)
	return o, "", err
}
