package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/parser"
)

// cmdParse converts files (or stdin) once: events as NDJSON on stdout, each
// rejected record on stderr as FILE:OFFSET: reason.
func cmdParse(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	format := fs.String("format", parser.FormatAuto, "source format: auto (detected per file) or one of "+strings.Join(parser.Formats(), ", "))
	tz := fs.String("timezone", "Local", "zone of the server's local timestamps (IANA name, Local or UTC)")
	myhost := fs.String("myhost", "", "server name for formats whose records lack it (default: this host's name)")
	logouts := fs.Bool("logouts", false, "keep logout events")
	strict := fs.Bool("strict", false, "exit 1 when any record is rejected")
	schemaName := fs.String("schema", "auditlogin", "event schema: auditlogin (the documented fields), ecs (Elastic Common Schema) or both")
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	loc, err := config.LoadLocation(*tz)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin parse: --timezone: %v\n", err)
		return exitConfig
	}
	schema, err := auditlogin.ParseSchema(*schemaName)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin parse: --schema: %v\n", err)
		return exitConfig
	}
	opts := parser.Options{Location: loc, MyHost: *myhost, Logouts: *logouts, Pasted: true} // one-shot input may be pasted text
	if _, err := parser.New(*format, opts); err != nil && *format != parser.FormatAuto {
		fmt.Fprintf(stderr, "auditlogin parse: --format: %v\n", err)
		return exitConfig
	}
	out := bufio.NewWriterSize(stdout, 256<<10)
	defer out.Flush()
	var rejected, events int
	buf := make([]byte, 0, 512)
	emit := func(rec auditlogin.Record) {
		switch {
		case rec.Err != nil:
			rejected++
			fmt.Fprintf(stderr, "%s:%d: %v\n", rec.Pos.Path, rec.Pos.Offset, rec.Err)
		case rec.Event != nil:
			events++
			ev := rec.Event
			ev.Normalize()
			buf = ev.Append(buf[:0], schema)
			buf = append(buf, '\n')
			out.Write(buf)
		}
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	status := exitOK
	for _, name := range files {
		var r io.Reader = stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintf(stderr, "auditlogin parse: %v\n", err)
				status = exitFail
				continue
			}
			defer f.Close()
			r = f
		}
		br := bufio.NewReaderSize(r, 256<<10)
		r = br
		f := *format
		if f == parser.FormatAuto {
			head, _ := br.Peek(64 << 10)
			if f = parser.Detect(head); f == "" {
				fmt.Fprintf(stderr, "auditlogin parse: %s: matches no known log format (%s)\n", name, strings.Join(parser.Formats(), ", "))
				status = exitFail
				continue
			}
		}
		p, _ := parser.New(f, opts)
		_, err := auditlogin.ReadLines(r, name, 0, true, func(l auditlogin.Line) {
			l.Parser = p
			p.Feed(l, emit)
		})
		if fl, ok := p.(auditlogin.Flusher); ok {
			fl.Flush(emit)
		}
		if err != nil {
			fmt.Fprintf(stderr, "auditlogin parse: reading %s: %v\n", name, err)
			status = exitFail
		}
	}
	if *strict && rejected > 0 {
		status = exitFail
	}
	return status
}
