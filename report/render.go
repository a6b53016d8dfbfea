package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
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
	Label, Tip  string
	Value, Alt  int64 // Alt: the failed part, drawn over Value
	X, Y, W, H  float64
	AltW, AltH  float64
	AltY, TextX float64
}

// tick is an axis mark with its label.
type tick struct {
	X, Y  float64
	Label string
}

// chart is one inline SVG: a viewBox, so it scales with the page.
type chart struct {
	Title         string
	Note          string // scale, aggregation
	Width, Height float64
	Bars          []bar
	Horizontal    bool
	Fail          bool // bars are failures (drawn in the failure colour)
	LabelW        float64
	YTicks        []tick // vertical chart: counts
	XTicks        []tick // vertical chart: day marks
	PlotX, PlotY  float64
	PlotW, PlotH  float64
	YLabel        string
	XLabel        string
	Legend        bool
	// derived for the template
	AxisY, PlotRight, MidY, XLabelY float64
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, for axis ticks.
func niceMax(v int64) int64 {
	if v <= 1 {
		return 1
	}
	p := int64(1)
	for p*10 < v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// timeChart draws connections over time with the failed part in red:
// hourly up to two days, by 6 hours up to two weeks, by day beyond, with a
// count axis, day marks and a legend.
func timeChart(r *Report) chart {
	c := chart{Title: "Logins over time (UTC): successful and failed", Width: 900, Height: 260, Legend: true,
		PlotX: 60, PlotY: 30, PlotW: 820, PlotH: 180, YLabel: "connections"}
	if len(r.Hours) == 0 {
		c.Height = 40
		return c
	}
	first, last := r.Hours[0].Hour, r.Hours[len(r.Hours)-1].Hour
	step, note := time.Hour, "per hour"
	switch span := last.Sub(first); {
	case span > 14*24*time.Hour:
		step, note = 24*time.Hour, "per day"
	case span > 48*time.Hour:
		step, note = 6*time.Hour, "per 6 hours"
	}
	c.Note = note
	start := first.Truncate(step)
	n := int(last.Truncate(step).Sub(start)/step) + 1
	conns, fails := make([]int64, n), make([]int64, n)
	for _, h := range r.Hours {
		i := int(h.Hour.Truncate(step).Sub(start) / step)
		conns[i] += h.Connections
		fails[i] += h.Failed
	}
	var most int64
	for _, v := range conns {
		most = maxi(most, v)
	}
	top := niceMax(most)
	for i := int64(0); i <= 4; i++ {
		v := top * i / 4
		c.YTicks = append(c.YTicks, tick{X: c.PlotX - 6, Y: c.PlotY + c.PlotH - float64(v)/float64(top)*c.PlotH, Label: strconv.FormatInt(v, 10)})
	}
	w := c.PlotW / float64(n)
	layout := "2006-01-02 15:04"
	if step == 24*time.Hour {
		layout = "2006-01-02"
	}
	// Day marks: every day, or fewer when there are many.
	days := int(last.Sub(first)/(24*time.Hour)) + 1
	every := max(1, days/10)
	for i := range n {
		t := start.Add(time.Duration(i) * step)
		bh := float64(conns[i]) / float64(top) * c.PlotH
		fh := float64(fails[i]) / float64(top) * c.PlotH
		x := c.PlotX + float64(i)*w
		c.Bars = append(c.Bars, bar{Tip: fmt.Sprintf("%s: %d connections, %d failed", t.Format(layout), conns[i], fails[i]),
			X: x, Y: c.PlotY + c.PlotH - bh, W: maxf(w-1, 1), H: bh, AltH: fh, AltY: c.PlotY + c.PlotH - fh})
		if t.Hour() == 0 && (int(t.Sub(first.Truncate(24*time.Hour))/(24*time.Hour)))%every == 0 || i == 0 {
			c.XTicks = append(c.XTicks, tick{X: x, Y: c.PlotY + c.PlotH + 14, Label: t.Format("Jan 2")})
		}
	}
	c.XLabel = "UTC, " + note
	c.AxisY, c.PlotRight = c.PlotY+c.PlotH, c.PlotX+c.PlotW
	c.MidY, c.XLabelY = c.PlotY+c.PlotH/2, c.PlotY+c.PlotH+34
	return c
}

func maxi(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// hbars draws one bar per label. When the largest value dwarfs the others
// (more than 20 times the smallest), the scale is logarithmic, so that one
// dominant source does not flatten the rest to slivers; the count is
// printed beside every bar either way. Labels longer than 40 characters are
// cut (the whole label is in the bar's tooltip).
func hbars(title string, labels []string, values, alts []int64, fail bool) chart {
	c := chart{Title: title, Width: 900, Height: 24*float64(len(labels)) + 20, Horizontal: true, Fail: fail}
	var hi, lo int64 = 1, 0
	for i, v := range values {
		hi = maxi(hi, v)
		if i == 0 || v < lo {
			lo = v
		}
	}
	logScale := lo > 0 && hi > 20*lo || lo == 0 && hi > 20
	if logScale {
		c.Note = "log scale"
	}
	scale := func(v int64) float64 {
		if logScale {
			return math.Log10(float64(v)+1) / math.Log10(float64(hi)+1)
		}
		return float64(v) / float64(hi)
	}
	longest := 0
	for i, l := range labels {
		l = clean(l)
		if r := []rune(l); len(r) > 40 {
			l = string(r[:39]) + "…"
		}
		labels[i] = l
		longest = max(longest, len([]rune(l)))
	}
	c.LabelW = math.Min(float64(longest)*6.6+10, 300)
	plotW := c.Width - c.LabelW - 70
	for i, l := range labels {
		w := scale(values[i]) * plotW
		alt := int64(0)
		if alts != nil {
			alt = alts[i]
		}
		c.Bars = append(c.Bars, bar{Label: l, Tip: fmt.Sprintf("%s: %d", l, values[i]), Value: values[i], Alt: alt,
			X: c.LabelW + 5, Y: 10 + float64(i)*24, W: maxf(w, 1), H: 18,
			AltW: maxf(scale(alt)*plotW, 0), TextX: c.LabelW + 5 + maxf(w, 1) + 6})
		if alt > 0 && logScale {
			// The failed part as a share of the bar, not on its own log scale.
			c.Bars[i].AltW = c.Bars[i].W * float64(alt) / float64(values[i])
		}
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
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 2em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}h2{margin-top:1.5em;font-size:1.15em}svg{width:100%;height:auto}svg text{font:11px sans-serif;fill:#333}
.ok{fill:#4c78a8}.fail{fill:#e45756}.axis{stroke:#999;stroke-width:1}.grid{stroke:#e5e5e5;stroke-width:1}
.note{color:#666;font-weight:normal;font-size:.85em}summary{cursor:pointer;color:#444}
</style></head><body>
<h1>Login audit report</h1>
<p>{{.Period}} · {{.R.Totals.Connections}} connections, {{.R.Totals.Failed}} failed, {{.R.Totals.Servers}} server(s)</p>
{{range .Charts}}{{$c := .}}{{if .Bars}}<h2>{{.Title}}{{if .Note}} <span class="note">({{.Note}})</span>{{end}}</h2>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="{{.Title}}">
{{if .Horizontal}}{{$fail := .Fail}}{{$lw := .LabelW}}{{range .Bars}}<text x="{{$lw}}" y="{{.Y}}" dy="13" text-anchor="end">{{.Label}}</text>
<rect class="{{if $fail}}fail{{else}}ok{{end}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Tip}}</title></rect>
{{if .Alt}}<rect class="fail" x="{{.X}}" y="{{.Y}}" width="{{.AltW}}" height="{{.H}}"><title>failed: {{.Alt}}</title></rect>{{end}}
<text x="{{.TextX}}" y="{{.Y}}" dy="13">{{.Value}}{{if .Alt}} ({{.Alt}} failed){{end}}</text>
{{end}}{{else}}{{range .YTicks}}<line class="grid" x1="{{$c.PlotX}}" y1="{{.Y}}" x2="{{$c.PlotRight}}" y2="{{.Y}}"/><text x="{{.X}}" y="{{.Y}}" dy="4" text-anchor="end">{{.Label}}</text>
{{end}}{{range .Bars}}<rect class="ok" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Tip}}</title></rect>
<rect class="fail" x="{{.X}}" y="{{.AltY}}" width="{{.W}}" height="{{.AltH}}"><title>{{.Tip}}</title></rect>
{{end}}{{range .XTicks}}<line class="grid" x1="{{.X}}" y1="{{$c.PlotY}}" x2="{{.X}}" y2="{{$c.AxisY}}"/><text x="{{.X}}" y="{{.Y}}" dy="4">{{.Label}}</text>
{{end}}<line class="axis" x1="{{.PlotX}}" y1="{{.PlotY}}" x2="{{.PlotX}}" y2="{{.AxisY}}"/><line class="axis" x1="{{.PlotX}}" y1="{{.AxisY}}" x2="{{.PlotRight}}" y2="{{.AxisY}}"/>
<text transform="translate(14,{{.MidY}}) rotate(-90)" text-anchor="middle">{{.YLabel}}</text>
<text x="470" y="{{.XLabelY}}" text-anchor="middle">{{.XLabel}}</text>
{{if .Legend}}<rect class="ok" x="700" y="6" width="12" height="12"/><text x="716" y="16">successful</text><rect class="fail" x="800" y="6" width="12" height="12"/><text x="816" y="16">failed</text>{{end}}
{{end}}</svg>
{{end}}{{end}}
{{range .Tables}}{{if .Collapsed}}<details><summary><strong>{{.Title}}</strong> ({{len .Rows}} rows)</summary>{{else}}<h2>{{.Title}}</h2>{{end}}
{{if .Rows}}<table><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{clean .}}</td>{{end}}</tr>
{{end}}</table>{{else}}<p>(none)</p>{{end}}{{if .Collapsed}}</details>{{end}}
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
	charts := []chart{timeChart(r), hbars("Top sources: connections (failed part in red)", labels, vals, alts, false)}
	labels, vals = nil, nil
	for _, s := range r.RootLogins {
		labels, vals = append(labels, orDash(s.Host)+" "+orDash(s.IP)), append(vals, s.Count)
	}
	charts = append(charts, hbars("Where root logs in from", labels, vals, nil, false))
	labels, vals = nil, nil
	for _, p := range r.Probes {
		labels, vals = append(labels, orDash(p.IP)), append(vals, p.Count)
	}
	charts = append(charts, hbars("Connections without credentials (probes) by source", labels, vals, nil, true))
	labels, vals = nil, nil
	for _, u := range r.FailedByUser {
		labels, vals = append(labels, u.User), append(vals, u.Count)
	}
	charts = append(charts, hbars("Failed logins by account", labels, vals, nil, true))
	type htmlTable struct {
		Title     string
		Head      []string
		Rows      [][]string
		Collapsed bool
	}
	var ts []htmlTable
	for _, t := range tables(r) {
		// Long tables the charts already show are folded.
		ts = append(ts, htmlTable{t.title, t.head, t.rows, len(t.rows) > 24})
	}
	return htmlTmpl.Execute(w, map[string]any{"R": r, "Period": period, "Charts": charts, "Tables": ts})
}
