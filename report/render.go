package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats are the output formats Render takes.
var Formats = []string{"text", "json", "csv", "markdown", "html"}

// Render writes r in format.
func Render(w io.Writer, r *Report, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "text":
		return renderTables(w, r, textTable)
	case "markdown":
		return renderTables(w, r, markdownTable)
	case "csv":
		return renderCSV(w, r)
	case "html":
		return renderHTML(w, r)
	}
	return fmt.Errorf("unknown format %q (expected one of: %s)", format, strings.Join(Formats, ", "))
}

type table struct {
	title string
	head  []string
	rows  [][]string
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func n(v int64) string { return strconv.FormatInt(v, 10) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tables is every section as rows of strings, in the order they are shown.
func tables(r *Report) []table {
	var out []table
	period := "no events"
	if r.From != nil && r.Until != nil {
		period = ts(*r.From) + " to " + ts(*r.Until)
	}
	out = append(out, table{title: "Totals (" + period + ")", head: []string{"connections", "successful", "failed", "servers"},
		rows: [][]string{{n(r.Totals.Connections), n(r.Totals.Successful), n(r.Totals.Failed), strconv.Itoa(r.Totals.Servers)}}})
	t := table{title: "Per server", head: []string{"myhost", "connections", "successful", "failed"}}
	for _, s := range r.Servers {
		t.rows = append(t.rows, []string{s.MyHost, n(s.Connections), n(s.Successful), n(s.Failed)})
	}
	out = append(out, t)
	t = table{title: "Per hour (UTC)", head: []string{"hour", "connections", "successful", "failed"}}
	for _, h := range r.Hours {
		t.rows = append(t.rows, []string{h.Hour.Format("2006-01-02 15:00"), n(h.Connections), n(h.Successful), n(h.Failed)})
	}
	out = append(out, t)
	t = table{title: "Top sources" + of(len(r.TopSources), r.Totals.Sources), head: []string{"host", "ip", "connections", "failed"}}
	for _, s := range r.TopSources {
		t.rows = append(t.rows, []string{orDash(s.Host), orDash(s.IP), n(s.Count), n(s.Failed)})
	}
	out = append(out, t)
	t = table{title: "Root logins by source" + of(len(r.RootLogins), r.Totals.RootSources), head: []string{"host", "ip", "logins"}}
	for _, s := range r.RootLogins {
		t.rows = append(t.rows, []string{orDash(s.Host), orDash(s.IP), n(s.Count)})
	}
	out = append(out, t)
	t = table{title: "Connections without credentials (probes) by source" + of(len(r.Probes), r.Totals.ProbeSources), head: []string{"ip", "connections"}}
	for _, p := range r.Probes {
		t.rows = append(t.rows, []string{orDash(p.IP), n(p.Count)})
	}
	out = append(out, t)
	t = table{title: "Accounts" + of(len(r.Accounts), r.Totals.Accounts), head: []string{"user", "logins", "failures", "distinct_sources", "first_seen", "last_seen"}}
	for _, a := range r.Accounts {
		t.rows = append(t.rows, []string{a.User, n(a.Logins), n(a.Failures), strconv.Itoa(a.DistinctSources), ts(a.FirstSeen), ts(a.LastSeen)})
	}
	out = append(out, t)
	t = table{title: "Failed logins by account" + of(len(r.FailedByUser), r.Totals.FailedAccounts), head: []string{"user", "failures"}}
	for _, u := range r.FailedByUser {
		t.rows = append(t.rows, []string{u.User, n(u.Count)})
	}
	out = append(out, t)
	t = table{title: "Failed logins by source" + of(len(r.FailedBySrc), r.Totals.FailedSources), head: []string{"host", "ip", "failures", "connections"}}
	for _, s := range r.FailedBySrc {
		t.rows = append(t.rows, []string{orDash(s.Host), orDash(s.IP), n(s.Failed), n(s.Count)})
	}
	out = append(out, t)
	if !r.StaleChecked {
		// Not the same as "none stale": say so in every format.
		out = append(out, table{title: "Stale accounts: not checked (give --accounts FILE or --mysql-dsn)", head: []string{"user", "host", "last_login"},
			rows: [][]string{{notChecked, "", ""}}})
		return out
	}
	t = table{title: "Stale accounts (no successful login in the " + r.StaleAfter + " before the end)", head: []string{"user", "host", "last_login"}}
	for _, s := range r.StaleAccounts {
		last := "never"
		if s.LastLogin != nil {
			last = ts(*s.LastLogin)
		}
		t.rows = append(t.rows, []string{s.User, s.Host, last})
	}
	out = append(out, t)
	if len(r.StaleExcluded) > 0 {
		t = table{title: "Left out of the stale check (no one logs in with them)", head: []string{"user", "host", "reason"}}
		for _, e := range r.StaleExcluded {
			t.rows = append(t.rows, []string{e.User, e.Host, e.Reason})
		}
		out = append(out, t)
	}
	return out
}

// notChecked fills the stale section when no account list was given.
const notChecked = "(not checked)"

// of says how many of how many a cut list shows.
func of(shown, total int) string {
	if total > shown {
		return fmt.Sprintf(" (top %d of %d)", shown, total)
	}
	return ""
}

// clean makes a user-controlled string safe for one table cell: control
// characters (a user name can hold a newline) are shown escaped.
func clean(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func renderTables(w io.Writer, r *Report, write func(io.Writer, table) error) error {
	for _, t := range tables(r) {
		if err := write(w, t); err != nil {
			return err
		}
	}
	return nil
}

func textTable(w io.Writer, t table) error {
	fmt.Fprintf(w, "%s\n", t.title)
	if len(t.rows) == 0 {
		_, err := fmt.Fprint(w, "  (none)\n\n")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\n", strings.Join(t.head, "\t"))
	for _, row := range t.rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = strings.ReplaceAll(clean(c), "\t", " ")
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

func markdownTable(w io.Writer, t table) error {
	fmt.Fprintf(w, "## %s\n\n", t.title)
	if len(t.rows) == 0 {
		_, err := fmt.Fprint(w, "(none)\n\n")
		return err
	}
	esc := func(s string) string {
		s = clean(s)
		for _, c := range []string{`\`, "|", "*", "_", "`", "<", ">", "[", "]"} {
			s = strings.ReplaceAll(s, c, `\`+c)
		}
		return s
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.head, " | "), strings.Repeat(" --- |", len(t.head)))
	for _, row := range t.rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = esc(c)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	_, err := fmt.Fprintln(w)
	return err
}

// renderCSV writes one CSV: each row starts with its section's name; each
// section begins with its header row (section "header:NAME").
func renderCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	names := []string{"totals", "servers", "hours", "top_sources", "root_logins", "probes", "accounts", "failed_by_account", "failed_by_source", "stale_accounts", "stale_excluded"}
	ts := tables(r)
	width := 0
	for _, t := range ts {
		width = max(width, len(t.head)+1)
	}
	// Every row as wide as the widest, so that the file is one rectangle.
	pad := func(row []string) []string {
		for len(row) < width {
			row = append(row, "")
		}
		return row
	}
	for i, t := range ts {
		cw.Write(pad(append([]string{"section"}, t.head...)))
		for _, row := range t.rows {
			safe := make([]string, len(row))
			for j, c := range row {
				safe[j] = csvCell(c)
			}
			cw.Write(pad(append([]string{names[i]}, safe...)))
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvCell neutralises a cell a spreadsheet would take for a formula (OWASP
// CSV injection): a client chooses its user name, and
// =HYPERLINK("http://evil.example","x") must stay text. Such a cell gets a
// leading apostrophe; the JSON report keeps the raw value. A lone "-" (no
// host) is no formula and stays.
func csvCell(c string) string {
	if c == "" || c == "-" {
		return c
	}
	switch c[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + c
	}
	return c
}

// bar is one bar of a chart.
type bar struct {
	Label      string
	Value, Alt int64 // Alt: the failed part, drawn over Value
	X, Y, W, H float64
	AltH, AltY float64
	TextX      float64
}

type chart struct {
	Title         string
	Width, Height float64
	Bars          []bar
	Horizontal    bool
}

// hoursChart draws connections per hour with the failed part in red.
func hoursChart(r *Report) chart {
	c := chart{Title: "Logins per hour (UTC): successful and failed", Width: 900, Height: 220}
	var max int64 = 1
	for _, h := range r.Hours {
		if h.Connections > max {
			max = h.Connections
		}
	}
	if len(r.Hours) == 0 {
		return c
	}
	w := (c.Width - 40) / float64(len(r.Hours))
	for i, h := range r.Hours {
		bh := float64(h.Connections) / float64(max) * (c.Height - 40)
		fh := float64(h.Failed) / float64(max) * (c.Height - 40)
		c.Bars = append(c.Bars, bar{Label: h.Hour.Format("01-02 15h"), Value: h.Connections, Alt: h.Failed,
			X: 30 + float64(i)*w, Y: c.Height - 20 - bh, W: maxf(w-1, 1), H: bh, AltH: fh, AltY: c.Height - 20 - fh})
	}
	return c
}

func hbars(title string, labels []string, values, alts []int64) chart {
	c := chart{Title: title, Width: 900, Height: 24*float64(len(labels)) + 30, Horizontal: true}
	var max int64 = 1
	for _, v := range values {
		if v > max {
			max = v
		}
	}
	for i, l := range labels {
		w := float64(values[i]) / float64(max) * 560
		alt := int64(0)
		if alts != nil {
			alt = alts[i]
		}
		c.Bars = append(c.Bars, bar{Label: l, Value: values[i], Alt: alt, X: 300, Y: 20 + float64(i)*24, W: maxf(w, 1), H: 18,
			AltH: float64(alt) / float64(max) * 560, TextX: 300 + maxf(w, 1) + 6})
	}
	return c
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

var htmlTmpl = template.Must(template.New("r").Funcs(template.FuncMap{"clean": clean}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>auditlogin report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 2em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.n{text-align:right}h2{margin-top:1.5em}svg text{font:11px sans-serif}
.ok{fill:#4c78a8}.fail{fill:#e45756}
</style></head><body>
<h1>Login audit report</h1>
<p>{{.Period}} · {{.R.Totals.Connections}} connections, {{.R.Totals.Failed}} failed, {{len .R.Servers}} server(s)</p>
{{range .Charts}}<h2>{{.Title}}</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="{{.Title}}">
{{if .Horizontal}}{{range .Bars}}<text x="290" y="{{.Y}}" dy="13" text-anchor="end">{{clean .Label}}</text>
<rect class="ok" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{clean .Label}}: {{.Value}}</title></rect>
{{if .Alt}}<rect class="fail" x="{{.X}}" y="{{.Y}}" width="{{.AltH}}" height="{{.H}}"><title>failed: {{.Alt}}</title></rect>{{end}}
<text x="{{.TextX}}" y="{{.Y}}" dy="13">{{.Value}}</text>
{{end}}{{else}}{{range .Bars}}<rect class="ok" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Label}}: {{.Value}} ({{.Alt}} failed)</title></rect>
<rect class="fail" x="{{.X}}" y="{{.AltY}}" width="{{.W}}" height="{{.AltH}}"></rect>
{{end}}{{end}}</svg>
{{end}}
{{range .Tables}}<h2>{{.Title}}</h2>
{{if .Rows}}<table><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{clean .}}</td>{{end}}</tr>
{{end}}</table>{{else}}<p>(none)</p>{{end}}
{{end}}
</body></html>
`))

// renderHTML writes one self-contained page: no script, no network, charts
// as inline SVG, every string escaped (user names are chosen by clients).
func renderHTML(w io.Writer, r *Report) error {
	period := "no events"
	if r.From != nil && r.Until != nil {
		period = ts(*r.From) + " to " + ts(*r.Until)
	}
	var labels []string
	var vals, alts []int64
	for _, s := range r.TopSources {
		labels = append(labels, orDash(s.Host)+" "+orDash(s.IP))
		vals, alts = append(vals, s.Count), append(alts, s.Failed)
	}
	charts := []chart{hoursChart(r), hbars("Top sources (failed in red)", labels, vals, alts)}
	labels, vals = nil, nil
	for _, u := range r.FailedByUser {
		labels, vals = append(labels, u.User), append(vals, u.Count)
	}
	charts = append(charts, hbars("Failed logins by account", labels, vals, nil))
	var ts []struct {
		Title string
		Head  []string
		Rows  [][]string
	}
	for _, t := range tables(r) {
		ts = append(ts, struct {
			Title string
			Head  []string
			Rows  [][]string
		}{t.title, t.head, t.rows})
	}
	return htmlTmpl.Execute(w, map[string]any{"R": r, "Period": period, "Charts": charts, "Tables": ts})
}
