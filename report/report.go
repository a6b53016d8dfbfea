// Package report answers the questions the login audit exists for, over any
// number of events from one server or a fleet: how many connections and
// failures (per server, per hour), from where, where root logs in from,
// which sources probe the port without credentials, which accounts are used
// and how, and which are stale. It streams: memory grows with the distinct
// servers, hours, sources and accounts, never with the number of events.
package report

import (
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin"
)

// Account is a MySQL account: user name and host pattern (% and _ wildcards).
type Account struct {
	User string `json:"user"`
	Host string `json:"host"`
}

// Options shape a report.
type Options struct {
	Top        int           // rows of every ranked list (20)
	StaleAfter time.Duration // an account with no successful login this long before Until is stale (7 days)
	Until      time.Time     // the report's end; zero: the latest event's time
	// CheckStale: Accounts is the list to check (from mysql.user or a
	// file), even if empty; implied when Accounts is not. Without it the
	// stale section says "not checked", which is not "none stale".
	CheckStale bool
	Accounts   []Account // accounts to check for staleness
	Excluded   []Excluded
}

// Excluded is an account left out of the stale check, with why (locked,
// a role, a system account: no one logs in with it).
type Excluded struct {
	User   string `json:"user"`
	Host   string `json:"host"`
	Reason string `json:"reason"`
}

// Report is the result; its JSON field names are a contract.
type Report struct {
	From          *time.Time     `json:"from"`
	Until         *time.Time     `json:"until"`
	Totals        ReportTotals   `json:"totals"`
	Servers       []ServerTotals `json:"servers"`
	Hours         []HourTotals   `json:"hours"`
	TopSources    []SourceCount  `json:"top_sources"`
	RootLogins    []RootLogin    `json:"root_logins"`
	Probes        []Probe        `json:"probes"`
	Accounts      []AccountStats `json:"accounts"`
	FailedByUser  []UserCount    `json:"failed_by_account"`
	FailedBySrc   []SourceCount  `json:"failed_by_source"`
	StaleChecked  bool           `json:"stale_checked"`  // false: no account list was given (stale_accounts is null)
	StaleAccounts []StaleAccount `json:"stale_accounts"` // null when not checked, [] when none is stale
	StaleExcluded []Excluded     `json:"stale_excluded"` // accounts left out of the check, with the reason
	StaleAfter    string         `json:"stale_after"`
	Events        int64          `json:"events"`
	Logouts       int64          `json:"logouts"`
}

// Totals counts connections (login attempts) and failures.
type Totals struct {
	Connections int64 `json:"connections"`
	Successful  int64 `json:"successful"`
	Failed      int64 `json:"failed"`
}

// ReportTotals are the whole report's totals, with how many entries each
// list had before Top cut it.
type ReportTotals struct {
	Totals
	Servers        int `json:"servers"`
	Sources        int `json:"sources"`         // distinct sources (ip, or host without ip)
	Accounts       int `json:"accounts"`        // distinct user names
	RootSources    int `json:"root_sources"`    // sources of successful root logins
	ProbeSources   int `json:"probe_sources"`   // sources of connections without credentials
	FailedSources  int `json:"failed_sources"`  // sources with failed logins
	FailedAccounts int `json:"failed_accounts"` // user names with failed logins
}

// ServerTotals are one server's totals.
type ServerTotals struct {
	MyHost string `json:"myhost"`
	Totals
}

// HourTotals are one hour's totals (UTC), all servers.
type HourTotals struct {
	Hour time.Time `json:"hour"`
	Totals
}

// SourceCount counts attempts from one source: all of them (count) and the
// failed ones. Host and ip are "" where the log has none (text shows "-").
type SourceCount struct {
	Host   string `json:"host"`
	IP     string `json:"ip"`
	Count  int64  `json:"count"`
	Failed int64  `json:"failed"`
}

// RootLogin counts successful root logins from one source.
type RootLogin struct {
	Host  string `json:"host"`
	IP    string `json:"ip"`
	Count int64  `json:"count"`
}

// Probe counts connections without credentials from one ip.
type Probe struct {
	IP    string `json:"ip"`
	Count int64  `json:"count"`
}

// AccountStats is one user name's activity.
type AccountStats struct {
	User            string    `json:"user"`
	Logins          int64     `json:"logins"`
	Failures        int64     `json:"failures"`
	DistinctSources int       `json:"distinct_sources"`
	FirstSeen       time.Time `json:"first_seen"`
	LastSeen        time.Time `json:"last_seen"`
}

// UserCount counts failures for one user name.
type UserCount struct {
	User  string `json:"user"`
	Count int64  `json:"count"`
}

// StaleAccount is an account with no successful login within StaleAfter of
// the report's end; LastLogin is null when it was never seen.
type StaleAccount struct {
	User      string     `json:"user"`
	Host      string     `json:"host"`
	LastLogin *time.Time `json:"last_login"`
}

// Aggregator accumulates events. Add is not safe for concurrent use.
type Aggregator struct {
	opt      Options
	first    time.Time
	last     time.Time
	totals   Totals
	events   int64
	logouts  int64
	servers  map[string]*Totals
	hours    map[int64]*Totals
	sources  map[[2]string]*SourceCount
	roots    map[[2]string]int64
	probes   map[string]int64
	accounts map[string]*account
}

type account struct {
	stats   AccountStats
	sources map[string]bool
	// last successful login per (host, ip), for matching host patterns
	success map[[2]string]time.Time
}

// New returns an empty Aggregator.
func New(opt Options) *Aggregator {
	if opt.Top <= 0 {
		opt.Top = 20
	}
	if opt.StaleAfter <= 0 {
		opt.StaleAfter = 7 * 24 * time.Hour
	}
	return &Aggregator{opt: opt, servers: map[string]*Totals{}, hours: map[int64]*Totals{},
		sources: map[[2]string]*SourceCount{}, roots: map[[2]string]int64{}, probes: map[string]int64{},
		accounts: map[string]*account{}}
}

func ns(s auditlogin.NullString) string {
	if !s.Valid {
		return ""
	}
	return s.S
}

// Add counts one event.
func (a *Aggregator) Add(ev *auditlogin.Event) {
	a.events++
	t := ev.Timestamp
	if a.first.IsZero() || t.Before(a.first) {
		a.first = t
	}
	if t.After(a.last) {
		a.last = t
	}
	if ev.Type == auditlogin.TypeLogout {
		a.logouts++
		return
	}
	failed := ev.Type == auditlogin.TypeFailed
	count := func(tt *Totals) {
		tt.Connections++
		if failed {
			tt.Failed++
		} else {
			tt.Successful++
		}
	}
	count(&a.totals)
	srv := a.servers[ev.MyHost]
	if srv == nil {
		srv = &Totals{}
		a.servers[ev.MyHost] = srv
	}
	count(srv)
	hour := t.UTC().Truncate(time.Hour).Unix()
	h := a.hours[hour]
	if h == nil {
		h = &Totals{}
		a.hours[hour] = h
	}
	count(h)
	host, ip := ns(ev.Host), ns(ev.IP)
	src := a.sources[[2]string{host, ip}]
	if src == nil {
		src = &SourceCount{Host: host, IP: ip}
		a.sources[[2]string{host, ip}] = src
	}
	src.Count++
	if failed {
		src.Failed++
	}
	if !ev.User.Valid {
		a.probes[ip]++
		return
	}
	if !failed && (ev.User.S == "root" || (ev.PrivUser.Valid && ev.PrivUser.S == "root")) {
		a.roots[[2]string{host, ip}]++
	}
	acc := a.accounts[ev.User.S]
	if acc == nil {
		acc = &account{stats: AccountStats{User: ev.User.S, FirstSeen: t, LastSeen: t}, sources: map[string]bool{},
			success: map[[2]string]time.Time{}}
		a.accounts[ev.User.S] = acc
	}
	if failed {
		acc.stats.Failures++
	} else {
		acc.stats.Logins++
		k := [2]string{host, ip}
		if t.After(acc.success[k]) {
			acc.success[k] = t
		}
	}
	source := ip
	if source == "" {
		source = host
	}
	acc.sources[source] = true
	if t.Before(acc.stats.FirstSeen) {
		acc.stats.FirstSeen = t
	}
	if t.After(acc.stats.LastSeen) {
		acc.stats.LastSeen = t
	}
}

// Report computes the report from what was added.
func (a *Aggregator) Report() *Report {
	r := &Report{Totals: ReportTotals{Totals: a.totals}, Events: a.events, Logouts: a.logouts,
		Servers: []ServerTotals{}, Hours: []HourTotals{}, TopSources: []SourceCount{}, RootLogins: []RootLogin{},
		Probes: []Probe{}, Accounts: []AccountStats{}, FailedByUser: []UserCount{}, FailedBySrc: []SourceCount{},
		StaleAccounts: []StaleAccount{}, StaleAfter: FormatDuration(a.opt.StaleAfter)}
	until := a.opt.Until
	if until.IsZero() {
		until = a.last
	}
	if !a.first.IsZero() {
		from := a.first.UTC()
		r.From = &from
	}
	if !until.IsZero() {
		u := until.UTC()
		r.Until = &u
	}
	for name, t := range a.servers {
		r.Servers = append(r.Servers, ServerTotals{MyHost: name, Totals: *t})
	}
	for h, t := range a.hours {
		r.Hours = append(r.Hours, HourTotals{Hour: time.Unix(h, 0).UTC(), Totals: *t})
	}
	for _, s := range a.sources {
		r.TopSources = append(r.TopSources, *s)
		if s.Failed > 0 {
			r.FailedBySrc = append(r.FailedBySrc, *s)
		}
	}
	for k, n := range a.roots {
		r.RootLogins = append(r.RootLogins, RootLogin{Host: k[0], IP: k[1], Count: n})
	}
	for ip, n := range a.probes {
		r.Probes = append(r.Probes, Probe{IP: ip, Count: n})
	}
	for _, acc := range a.accounts {
		st := acc.stats
		st.DistinctSources = len(acc.sources)
		r.Accounts = append(r.Accounts, st)
		if st.Failures > 0 {
			r.FailedByUser = append(r.FailedByUser, UserCount{User: st.User, Count: st.Failures})
		}
	}
	cutoff := until.Add(-a.opt.StaleAfter)
	for _, ac := range a.opt.Accounts {
		last := a.lastLogin(ac)
		if last == nil || last.Before(cutoff) {
			r.StaleAccounts = append(r.StaleAccounts, StaleAccount{User: ac.User, Host: ac.Host, LastLogin: last})
		}
	}
	Finish(r, a.opt)
	return r
}

// Finish puts a report's full lists in the order every format shows them,
// counts them (totals), cuts the ranked lists at Top, and settles the stale
// section. The file and the Elasticsearch paths both end here, so their
// reports agree.
func Finish(r *Report, opt Options) {
	if opt.Top <= 0 {
		opt.Top = 20
	}
	sort.Slice(r.Servers, func(i, j int) bool { return r.Servers[i].MyHost < r.Servers[j].MyHost })
	sort.Slice(r.Hours, func(i, j int) bool { return r.Hours[i].Hour.Before(r.Hours[j].Hour) })
	sortSources(r.TopSources, func(s SourceCount) int64 { return s.Count })
	sortSources(r.FailedBySrc, func(s SourceCount) int64 { return s.Failed })
	sort.Slice(r.RootLogins, func(i, j int) bool {
		x, y := r.RootLogins[i], r.RootLogins[j]
		if x.Count != y.Count {
			return x.Count > y.Count
		}
		if c := CompareIP(x.IP, y.IP); c != 0 {
			return c < 0
		}
		return x.Host < y.Host
	})
	sort.Slice(r.Probes, func(i, j int) bool {
		if r.Probes[i].Count != r.Probes[j].Count {
			return r.Probes[i].Count > r.Probes[j].Count
		}
		return CompareIP(r.Probes[i].IP, r.Probes[j].IP) < 0
	})
	SortAccounts(r.Accounts, r.FailedByUser)
	r.Totals.Servers, r.Totals.Sources, r.Totals.Accounts = len(r.Servers), len(r.TopSources), len(r.Accounts)
	r.Totals.RootSources, r.Totals.ProbeSources = len(r.RootLogins), len(r.Probes)
	r.Totals.FailedSources, r.Totals.FailedAccounts = len(r.FailedBySrc), len(r.FailedByUser)
	r.TopSources = top(r.TopSources, opt.Top)
	r.FailedBySrc = top(r.FailedBySrc, opt.Top)
	r.RootLogins = top(r.RootLogins, opt.Top)
	r.Probes = top(r.Probes, opt.Top)
	r.Accounts = top(r.Accounts, opt.Top)
	r.FailedByUser = top(r.FailedByUser, opt.Top)
	r.StaleChecked = opt.CheckStale || len(opt.Accounts) > 0
	r.StaleExcluded = append([]Excluded{}, opt.Excluded...)
	if !r.StaleChecked {
		r.StaleAccounts = nil
		return
	}
	if r.StaleAccounts == nil {
		r.StaleAccounts = []StaleAccount{}
	}
	sort.Slice(r.StaleAccounts, func(i, j int) bool {
		x, y := r.StaleAccounts[i], r.StaleAccounts[j]
		if x.User != y.User {
			return x.User < y.User
		}
		return x.Host < y.Host
	})
}

// CompareIP orders addresses numerically (10.0.0.21 before 10.0.0.106,
// IPv4 before IPv6); what is not an address sorts after, as text.
func CompareIP(a, b string) int {
	x, errx := netip.ParseAddr(a)
	y, erry := netip.ParseAddr(b)
	switch {
	case errx == nil && erry == nil:
		return x.Compare(y)
	case errx == nil:
		return -1
	case erry == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// lastLogin is the account's latest successful login: by its user name, from
// a host or ip its host pattern matches.
func (a *Aggregator) lastLogin(ac Account) *time.Time {
	acc := a.accounts[ac.User]
	if acc == nil {
		return nil
	}
	var last time.Time
	for src, t := range acc.success {
		if HostMatches(ac.Host, src[0]) || HostMatches(ac.Host, src[1]) || (src[1] == "" && HostMatches(ac.Host, "localhost")) {
			if t.After(last) {
				last = t
			}
		}
	}
	if last.IsZero() {
		return nil
	}
	l := last.UTC()
	return &l
}

// HostMatches applies a MySQL account host pattern (% any run, _ one
// character, case-insensitive) to a host or ip.
func HostMatches(pattern, host string) bool {
	if host == "" {
		return false
	}
	p, h := strings.ToLower(pattern), strings.ToLower(host)
	// iterative wildcard match with backtracking on %
	pi, hi, star, mark := 0, 0, -1, 0
	for hi < len(h) {
		switch {
		case pi < len(p) && (p[pi] == '_' || p[pi] == h[hi]):
			pi++
			hi++
		case pi < len(p) && p[pi] == '%':
			star, mark = pi, hi
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			hi = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '%' {
		pi++
	}
	return pi == len(p)
}

// SortAccounts orders accounts by attempts and failures by count (ties by
// name), as every report shows them.
func SortAccounts(accounts []AccountStats, failed []UserCount) {
	sort.Slice(accounts, func(i, j int) bool {
		x, y := accounts[i], accounts[j]
		if x.Logins+x.Failures != y.Logins+y.Failures {
			return x.Logins+x.Failures > y.Logins+y.Failures
		}
		return x.User < y.User
	})
	sort.Slice(failed, func(i, j int) bool {
		if failed[i].Count != failed[j].Count {
			return failed[i].Count > failed[j].Count
		}
		return failed[i].User < failed[j].User
	})
}

// sortSources orders sources by a count, most first; ties by ip
// (numerically), then host.
func sortSources(s []SourceCount, by func(SourceCount) int64) {
	sort.Slice(s, func(i, j int) bool {
		if a, b := by(s[i]), by(s[j]); a != b {
			return a > b
		}
		if c := CompareIP(s[i].IP, s[j].IP); c != 0 {
			return c < 0
		}
		return s[i].Host < s[j].Host
	})
}

func top[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ParseDuration is time.ParseDuration that also takes days and weeks: 7d, 2w, 36h.
func ParseDuration(s string) (time.Duration, error) {
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		d, err := time.ParseDuration(s[:n-1] + "h")
		if err != nil {
			return 0, err
		}
		if s[n-1] == 'd' {
			return d * 24, nil
		}
		return d * 24 * 7, nil
	}
	return time.ParseDuration(s)
}

// FormatDuration writes whole days as "7d".
func FormatDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strings.TrimSuffix(time.Duration(d/(24*time.Hour)).String(), "ns") + "d"
	}
	return d.String()
}
