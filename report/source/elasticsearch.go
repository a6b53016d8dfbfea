package source

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/auditlogin/auditlogin/report"
)

// Elasticsearch builds the report from an Elasticsearch index by aggregations
// (size 0): nothing is scanned on the agent's side. Totals and hours come in
// one search; every list that grows with the fleet (servers, sources, root
// origins, probes, accounts, last logins per account and source) is paged
// with a composite aggregation (after_key), one page of esPage buckets at a
// time, so that no answer comes near Elasticsearch's search.max_buckets
// (65,536 by default) however many accounts and sources there are, and the
// agent holds one page at a time. Distinct sources per account come from a
// cardinality aggregation on ip (exact below a few thousand, approximate
// above, as Elasticsearch documents).
func Elasticsearch(ctx context.Context, tp Transport, pattern string, names Names, opt report.Options) (*report.Report, error) {
	if names == (Names{}) {
		var err error
		if names, err = DetectNames(ctx, tp, pattern); err != nil {
			return nil, err
		}
	}
	search := func(body map[string]any) (int64, map[string]json.RawMessage, error) {
		b, _ := json.Marshal(body)
		sr, err := searchOnce(ctx, tp, pattern, b)
		if err != nil {
			return 0, nil, err
		}
		return sr.Hits.Total.Value, sr.Aggs, nil
	}
	term := func(f, v string) map[string]any { return map[string]any{"term": map[string]any{f: v}} }
	exists := func(f string) map[string]any { return map[string]any{"exists": map[string]any{"field": f}} }
	notLogout := term(names.Type, "logout")
	failed := map[string]any{"filter": term(names.Type, "failed_login")}
	success := map[string]any{"filter": term(names.Type, "successful_login")}
	lastTS := map[string]any{"max": map[string]any{"field": "@timestamp"}}
	firstTS := map[string]any{"min": map[string]any{"field": "@timestamp"}}
	query := func(must []any, mustNot ...any) map[string]any {
		return map[string]any{"bool": map[string]any{"must": must, "must_not": append([]any{notLogout}, mustNot...)}}
	}
	// pages runs one composite aggregation to its end, page by page.
	pages := func(q map[string]any, fields []string, subs map[string]any, each func(key map[string]any, b esBucket)) error {
		var after map[string]any
		for {
			var sources []any
			for _, f := range fields {
				for i, field := range names.fields(f) {
					name := f
					if i > 0 {
						name += strconv.Itoa(i)
					}
					sources = append(sources, map[string]any{name: map[string]any{"terms": map[string]any{"field": field, "missing_bucket": true}}})
				}
			}
			comp := map[string]any{"sources": sources, "size": esPage}
			if after != nil {
				comp["after"] = after
			}
			agg := map[string]any{"composite": comp}
			if len(subs) > 0 {
				agg["aggs"] = subs
			}
			_, aggs, err := search(map[string]any{"size": 0, "track_total_hits": false, "query": q, "aggs": map[string]any{"page": agg}})
			if err != nil {
				return err
			}
			var page struct {
				Buckets  []esBucket     `json:"buckets"`
				AfterKey map[string]any `json:"after_key"`
			}
			if err := json.Unmarshal(aggs["page"], &page); err != nil {
				return fmt.Errorf("--es: composite aggregation: %v", err)
			}
			for _, b := range page.Buckets {
				key, _ := b.Key.(map[string]any)
				each(key, b)
			}
			if len(page.Buckets) < esPage || page.AfterKey == nil {
				return nil
			}
			after = page.AfterKey
		}
	}
	// str is a logical field's value in a bucket's key: the first of its
	// fields that the bucket has (ECS keeps a client host that is no domain
	// name apart from source.domain).
	str := func(key map[string]any, f string) string {
		for i := range names.fields(f) {
			name := f
			if i > 0 {
				name += strconv.Itoa(i)
			}
			if v, ok := key[name].(string); ok {
				return v
			}
		}
		return ""
	}

	r := &report.Report{Servers: []report.ServerTotals{}, Hours: []report.HourTotals{}, TopSources: []report.SourceCount{},
		RootLogins: []report.RootLogin{}, Probes: []report.Probe{}, Accounts: []report.AccountStats{}, FailedByUser: []report.UserCount{},
		FailedBySrc: []report.SourceCount{}}
	if opt.StaleAfter <= 0 {
		opt.StaleAfter = 7 * 24 * time.Hour
	}
	r.StaleAfter = report.FormatDuration(opt.StaleAfter)
	total, a, err := search(map[string]any{"size": 0, "track_total_hits": true, "query": query(nil),
		"aggs": map[string]any{"first": firstTS, "last": lastTS, "failed": failed,
			"hours": map[string]any{"date_histogram": map[string]any{"field": "@timestamp", "fixed_interval": "1h", "min_doc_count": 1},
				"aggs": map[string]any{"failed": failed}}}})
	if err != nil {
		return nil, err
	}
	r.Events = total
	f := docCount(a["failed"])
	r.Totals.Totals = report.Totals{Connections: total, Failed: f, Successful: total - f}
	if first := msTime(a["first"]); !first.IsZero() {
		r.From = &first
	}
	until := opt.Until
	if until.IsZero() {
		until = msTime(a["last"])
	}
	if !until.IsZero() {
		u := until.UTC()
		r.Until = &u
	}
	for _, b := range buckets(a["hours"]) {
		k, _ := b.Key.(float64)
		fl := docCount(b.Sub["failed"])
		r.Hours = append(r.Hours, report.HourTotals{Hour: time.UnixMilli(int64(k)).UTC(), Totals: report.Totals{Connections: b.DocCount, Failed: fl, Successful: b.DocCount - fl}})
	}
	err = pages(query(nil), []string{"myhost"}, map[string]any{"failed": failed}, func(k map[string]any, b esBucket) {
		fl := docCount(b.Sub["failed"])
		r.Servers = append(r.Servers, report.ServerTotals{MyHost: str(k, "myhost"), Totals: report.Totals{Connections: b.DocCount, Failed: fl, Successful: b.DocCount - fl}})
	})
	if err != nil {
		return nil, err
	}
	err = pages(query(nil), []string{"host", "ip"}, map[string]any{"failed": failed}, func(k map[string]any, b esBucket) {
		s := report.SourceCount{Host: str(k, "host"), IP: str(k, "ip"), Count: b.DocCount, Failed: docCount(b.Sub["failed"])}
		r.TopSources = append(r.TopSources, s)
		if s.Failed > 0 {
			r.FailedBySrc = append(r.FailedBySrc, s)
		}
	})
	if err != nil {
		return nil, err
	}
	rootQ := map[string]any{"bool": map[string]any{"must": []any{term(names.Type, "successful_login")},
		"should": []any{term(names.User, "root"), term(names.PrivUser, "root")}, "minimum_should_match": 1}}
	err = pages(rootQ, []string{"host", "ip"}, nil, func(k map[string]any, b esBucket) {
		r.RootLogins = append(r.RootLogins, report.RootLogin{Host: str(k, "host"), IP: str(k, "ip"), Count: b.DocCount})
	})
	if err != nil {
		return nil, err
	}
	err = pages(query(nil, exists(names.User)), []string{"ip"}, nil, func(k map[string]any, b esBucket) {
		r.Probes = append(r.Probes, report.Probe{IP: str(k, "ip"), Count: b.DocCount})
	})
	if err != nil {
		return nil, err
	}
	err = pages(query([]any{exists(names.User)}), []string{"user"}, map[string]any{"ok": success, "failed": failed,
		"sources": map[string]any{"cardinality": map[string]any{"field": names.IP}}, "first": firstTS, "last": lastTS}, func(k map[string]any, b esBucket) {
		ok, fl := docCount(b.Sub["ok"]), docCount(b.Sub["failed"])
		srcs, _ := value(b.Sub["sources"])
		r.Accounts = append(r.Accounts, report.AccountStats{User: str(k, "user"), Logins: ok, Failures: fl, DistinctSources: int(srcs),
			FirstSeen: msTime(b.Sub["first"]), LastSeen: msTime(b.Sub["last"])})
		if fl > 0 {
			r.FailedByUser = append(r.FailedByUser, report.UserCount{User: str(k, "user"), Count: fl})
		}
	})
	if err != nil {
		return nil, err
	}
	if opt.CheckStale || len(opt.Accounts) > 0 {
		// The last successful login per user and (host, ip), matched with
		// the accounts' host patterns as the file path does.
		wanted := map[string]bool{}
		for _, ac := range opt.Accounts {
			wanted[ac.User] = true
		}
		last := map[string]map[[2]string]time.Time{}
		err = pages(map[string]any{"bool": map[string]any{"must": []any{term(names.Type, "successful_login")}}}, []string{"user", "host", "ip"},
			map[string]any{"last": lastTS}, func(k map[string]any, b esBucket) {
				user := str(k, "user")
				if !wanted[user] {
					return
				}
				if last[user] == nil {
					last[user] = map[[2]string]time.Time{}
				}
				last[user][[2]string{str(k, "host"), str(k, "ip")}] = msTime(b.Sub["last"])
			})
		if err != nil {
			return nil, err
		}
		cutoff := until.Add(-opt.StaleAfter)
		for _, ac := range opt.Accounts {
			var best time.Time
			for src, t := range last[ac.User] {
				if report.HostMatches(ac.Host, src[0]) || report.HostMatches(ac.Host, src[1]) || (src[1] == "" && report.HostMatches(ac.Host, "localhost")) {
					if t.After(best) {
						best = t
					}
				}
			}
			if best.IsZero() || best.Before(cutoff) {
				sa := report.StaleAccount{User: ac.User, Host: ac.Host}
				if !best.IsZero() {
					b := best
					sa.LastLogin = &b
				}
				r.StaleAccounts = append(r.StaleAccounts, sa)
			}
		}
	}
	report.Finish(r, opt)
	return r, nil
}

// Names are the fields a report reads in the index, by schema.
type Names struct {
	Type, MyHost, Host, HostAlt, IP, User, PrivUser string
}

// SeedNames are the auditlogin schema's fields; ECSNames the ecs and both
// schemas' (both has the ECS fields too, and its user and host are ECS's).
var (
	SeedNames = Names{Type: "type", MyHost: "myhost", Host: "host", IP: "ip", User: "user", PrivUser: "priv_user"}
	ECSNames  = Names{Type: "event.action", MyHost: "host.name", Host: "source.domain", HostAlt: "auditlogin.host",
		IP: "source.ip", User: "user.name", PrivUser: "user.effective.name"}
)

// NamesFor returns the names of an event_schema (auditlogin, ecs, both).
func NamesFor(schema string) Names {
	if schema == "ecs" || schema == "both" {
		return ECSNames
	}
	return SeedNames
}

// fields returns the index fields of a logical field (type, myhost, host,
// ip, user, priv_user).
func (n Names) fields(f string) []string {
	switch f {
	case "type":
		return []string{n.Type}
	case "myhost":
		return []string{n.MyHost}
	case "host":
		if n.HostAlt != "" {
			return []string{n.Host, n.HostAlt}
		}
		return []string{n.Host}
	case "ip":
		return []string{n.IP}
	case "user":
		return []string{n.User}
	case "priv_user":
		return []string{n.PrivUser}
	}
	return []string{f}
}

// DetectNames tells which schema the indices hold: ECS's names when any
// document has event.action (ecs or both), the seed's otherwise.
func DetectNames(ctx context.Context, tp Transport, pattern string) (Names, error) {
	sr, err := searchOnce(ctx, tp, pattern, []byte(`{"size":0,"track_total_hits":1,"query":{"exists":{"field":"event.action"}}}`))
	if err != nil {
		return Names{}, err
	}
	if sr.Hits.Total.Value > 0 {
		return ECSNames, nil
	}
	return SeedNames, nil
}

type searchResponse struct {
	Hits struct {
		Total struct {
			Value int64 `json:"value"`
		} `json:"total"`
	} `json:"hits"`
	Aggs map[string]json.RawMessage `json:"aggregations"`
}

// searchOnce sends one search to the indices matching pattern.
func searchOnce(ctx context.Context, tp Transport, pattern string, body []byte) (*searchResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/"+url.PathEscape(pattern)+"/_search", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := tp.Perform(req)
	if err != nil {
		return nil, fmt.Errorf("--es: %w", err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("--es: search answered %s: %.300s", res.Status, data)
	}
	var sr searchResponse
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("--es: the answer is not a search response: %v", err)
	}
	return &sr, nil
}

// Transport performs requests against the cluster with the client the
// Elasticsearch output is configured with (hosts, auth, TLS): the output's
// Transport.
type Transport interface {
	Perform(*http.Request) (*http.Response, error)
}

// esPage is how many buckets one composite page asks for.
const esPage = 5000

type esBucket struct {
	Key      any                        `json:"key"`
	DocCount int64                      `json:"doc_count"`
	Sub      map[string]json.RawMessage `json:"-"`
}

func (b *esBucket) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	json.Unmarshal(m["key"], &b.Key)
	json.Unmarshal(m["doc_count"], &b.DocCount)
	b.Sub = m
	return nil
}

func (b esBucket) key() string {
	switch k := b.Key.(type) {
	case string:
		return k
	case float64:
		return fmt.Sprint(int64(k))
	}
	return fmt.Sprint(b.Key)
}

func buckets(raw json.RawMessage) []esBucket {
	var a struct {
		Buckets []esBucket `json:"buckets"`
	}
	json.Unmarshal(raw, &a)
	return a.Buckets
}

func docCount(raw json.RawMessage) int64 {
	var a struct {
		DocCount int64 `json:"doc_count"`
	}
	json.Unmarshal(raw, &a)
	return a.DocCount
}

func value(raw json.RawMessage) (float64, bool) {
	var a struct {
		Value *float64 `json:"value"`
	}
	json.Unmarshal(raw, &a)
	if a.Value == nil {
		return 0, false
	}
	return *a.Value, true
}

func msTime(raw json.RawMessage) time.Time {
	v, ok := value(raw)
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(int64(v)).UTC()
}
