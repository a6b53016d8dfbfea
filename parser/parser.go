// Package parser holds one parser per source log format and the registry that
// names them. Each parser turns the lines of one file into normalized
// auditlogin.Records; formats are added in registry.go, in one place.
package parser

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Options are the per-input settings a parser needs.
type Options struct {
	// Location is the zone of the server's local timestamps (nil: time.Local).
	Location *time.Location
	// MyHost names the server for formats whose records do not (and
	// overrides nothing in those that do). Empty: the machine's hostname.
	MyHost string
	// Logouts keeps logout events for formats that record disconnects.
	Logouts bool
	// Pasted reads audit_login records pasted several to a line, separated
	// by spaces. Off for followed files: the original plugin writes one
	// record a line, and a user name holding `"} {"ts":"` could otherwise
	// pass for two records.
	Pasted bool
	// Now is the clock, for stamps with no year (syslog); nil: time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MyHost == "" {
		o.MyHost, _ = os.Hostname()
	}
	return o
}

// Constructor makes a parser for one file.
type Constructor func(Options) auditlogin.Parser

// registry maps a format name to its constructor. Filled here, in one place.
var registry = map[string]Constructor{
	FormatAuditLogin:   func(o Options) auditlogin.Parser { return NewAuditLogin(o) },
	FormatMariaDBAudit: func(o Options) auditlogin.Parser { return NewMariaDBAudit(o) },
	FormatGeneralLog:   func(o Options) auditlogin.Parser { return NewGeneralLog(o) },
	FormatErrorLog:     func(o Options) auditlogin.Parser { return NewErrorLog(o) },
	FormatPerconaAudit: func(o Options) auditlogin.Parser { return NewPerconaAudit(o) },
	FormatEnterpriseAudit: func(o Options) auditlogin.Parser {
		return NewEnterpriseAudit(o)
	},
}

// Formats lists the registered format names, sorted.
func Formats() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New returns a parser for the named format.
func New(format string, o Options) (auditlogin.Parser, error) {
	c, ok := registry[format]
	if !ok {
		return nil, fmt.Errorf("unknown format %q (known: %s)", format, strings.Join(Formats(), ", "))
	}
	return c(o.withDefaults()), nil
}

// Known reports whether format names a registered parser.
func Known(format string) bool {
	_, ok := registry[format]
	return ok
}
