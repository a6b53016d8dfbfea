package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/auditlogin/auditlogin/report"
)

// esReport builds the report from an Elasticsearch index with one search of
// aggregations (size 0): nothing is scanned on the agent's side. Distinct
// sources come from a cardinality aggregation on ip (exact below a few
// thousand, approximate above, as Elasticsearch documents).
func esReport(ctx context.Context, esURL, pattern, apiKeyEnv string, opt report.Options) (*report.Report, error) {
	u, err := url.Parse(esURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("--es: %q is not a URL", esURL)
	}
	const many = 10000
	top := opt.Top
	if top <= 0 {
		top = 20
	}
	failed := map[string]any{"filter": map[string]any{"term": map[string]any{"type": "failed_login"}}}
	success := map[string]any{"filter": map[string]any{"term": map[string]any{"type": "successful_login"}}}
	lastTS := map[string]any{"max": map[string]any{"field": "@timestamp"}}
	firstTS := map[string]any{"min": map[string]any{"field": "@timestamp"}}
	terms := func(field string, size int, sub map[string]any) map[string]any {
		m := map[string]any{"terms": map[string]any{"field": field, "size": size}}
		if sub != nil {
			m["aggs"] = sub
		}
		return m
	}
	body := map[string]any{
		"size":  0,
		"query": map[string]any{"bool": map[string]any{"must_not": []any{map[string]any{"term": map[string]any{"type": "logout"}}}}},
		"aggs": map[string]any{
			"first":   firstTS,
			"last":    lastTS,
			"failed":  failed,
			"servers": terms("myhost", many, map[string]any{"failed": failed}),
			"hours": map[string]any{"date_histogram": map[string]any{"field": "@timestamp", "fixed_interval": "1h", "min_doc_count": 1},
				"aggs": map[string]any{"failed": failed}},
			// Every source (up to many), not the top: the failed-by-source
			// list and the counts in totals come from it, as in the file path.
			"sources": terms("ip", many, map[string]any{"hosts": terms("host", 1, nil), "failed": failed}),
			"socket": map[string]any{"filter": map[string]any{"bool": map[string]any{"must_not": []any{map[string]any{"exists": map[string]any{"field": "ip"}}}}},
				"aggs": map[string]any{"hosts": terms("host", many, map[string]any{"failed": failed})}},
			"root": map[string]any{"filter": map[string]any{"bool": map[string]any{
				"must":   []any{map[string]any{"term": map[string]any{"type": "successful_login"}}},
				"should": []any{map[string]any{"term": map[string]any{"user": "root"}}, map[string]any{"term": map[string]any{"priv_user": "root"}}}}},
				"aggs": map[string]any{"hosts": terms("host", top, map[string]any{"ips": terms("ip", top, nil)})}},
			"probes": map[string]any{"filter": map[string]any{"bool": map[string]any{"must_not": []any{map[string]any{"exists": map[string]any{"field": "user"}}}}},
				"aggs": map[string]any{"ips": terms("ip", many, nil)}},
			"accounts": terms("user", many, map[string]any{"ok": success, "failed": failed,
				"sources": map[string]any{"cardinality": map[string]any{"field": "ip"}}, "first": firstTS, "last": lastTS}),
			"logins": map[string]any{"filter": map[string]any{"term": map[string]any{"type": "successful_login"}},
				"aggs": map[string]any{"users": terms("user", many, map[string]any{
					"hosts": terms("host", many, map[string]any{"last": lastTS}),
					"ips":   terms("ip", many, map[string]any{"last": lastTS})})}},
		},
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(esURL, "/")+"/"+url.PathEscape(pattern)+"/_search", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKeyEnv != "" {
		key, ok := os.LookupEnv(apiKeyEnv)
		if !ok {
			return nil, fmt.Errorf("--es-api-key-env: variable %s is not set", apiKeyEnv)
		}
		req.Header.Set("Authorization", "ApiKey "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--es: %w", err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("--es: search answered %s: %.300s", res.Status, data)
	}
	var sr struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggs map[string]json.RawMessage `json:"aggregations"`
	}
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("--es: the answer is not a search response: %v", err)
	}
	return fromAggs(sr.Hits.Total.Value, sr.Aggs, opt, top)
}

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

func sub(raw json.RawMessage, name string) json.RawMessage {
	var m map[string]json.RawMessage
	json.Unmarshal(raw, &m)
	return m[name]
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

// fromAggs turns the aggregations into the same Report the file path makes.
func fromAggs(total int64, a map[string]json.RawMessage, opt report.Options, top int) (*report.Report, error) {
	r := &report.Report{Servers: []report.ServerTotals{}, Hours: []report.HourTotals{}, TopSources: []report.SourceCount{},
		RootLogins: []report.RootLogin{}, Probes: []report.Probe{}, Accounts: []report.AccountStats{}, FailedByUser: []report.UserCount{},
		FailedBySrc: []report.SourceCount{}, StaleAccounts: []report.StaleAccount{}}
	if opt.StaleAfter <= 0 {
		opt.StaleAfter = 7 * 24 * time.Hour
	}
	r.StaleAfter = report.FormatDuration(opt.StaleAfter)
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
	for _, b := range buckets(a["servers"]) {
		fl := docCount(b.Sub["failed"])
		r.Servers = append(r.Servers, report.ServerTotals{MyHost: b.key(), Totals: report.Totals{Connections: b.DocCount, Failed: fl, Successful: b.DocCount - fl}})
	}
	for _, b := range buckets(a["hours"]) {
		k, _ := b.Key.(float64)
		fl := docCount(b.Sub["failed"])
		r.Hours = append(r.Hours, report.HourTotals{Hour: time.UnixMilli(int64(k)).UTC(), Totals: report.Totals{Connections: b.DocCount, Failed: fl, Successful: b.DocCount - fl}})
	}
	firstHost := func(raw json.RawMessage) string {
		if hs := buckets(raw); len(hs) > 0 {
			return hs[0].key()
		}
		return ""
	}
	for _, b := range buckets(a["sources"]) {
		r.TopSources = append(r.TopSources, report.SourceCount{Host: firstHost(b.Sub["hosts"]), IP: b.key(), Count: b.DocCount, Failed: docCount(b.Sub["failed"])})
	}
	for _, b := range buckets(sub(a["socket"], "hosts")) {
		r.TopSources = append(r.TopSources, report.SourceCount{Host: b.key(), Count: b.DocCount, Failed: docCount(b.Sub["failed"])})
	}
	for _, s := range r.TopSources {
		if s.Failed > 0 {
			r.FailedBySrc = append(r.FailedBySrc, s)
		}
	}
	for _, hb := range buckets(sub(a["root"], "hosts")) {
		n := int64(0)
		for _, ib := range buckets(hb.Sub["ips"]) {
			r.RootLogins = append(r.RootLogins, report.RootLogin{Host: hb.key(), IP: ib.key(), Count: ib.DocCount})
			n += ib.DocCount
		}
		if n < hb.DocCount { // the socket: no ip
			r.RootLogins = append(r.RootLogins, report.RootLogin{Host: hb.key(), Count: hb.DocCount - n})
		}
	}
	for _, b := range buckets(sub(a["probes"], "ips")) {
		r.Probes = append(r.Probes, report.Probe{IP: b.key(), Count: b.DocCount})
	}
	for _, b := range buckets(a["accounts"]) {
		ok, fl := docCount(b.Sub["ok"]), docCount(b.Sub["failed"])
		srcs, _ := value(b.Sub["sources"])
		r.Accounts = append(r.Accounts, report.AccountStats{User: b.key(), Logins: ok, Failures: fl, DistinctSources: int(srcs),
			FirstSeen: msTime(b.Sub["first"]), LastSeen: msTime(b.Sub["last"])})
		if fl > 0 {
			r.FailedByUser = append(r.FailedByUser, report.UserCount{User: b.key(), Count: fl})
		}
	}
	// Stale accounts: the last successful login per user and host or ip.
	last := map[string]map[string]time.Time{}
	for _, ub := range buckets(sub(a["logins"], "users")) {
		m := map[string]time.Time{}
		for _, kind := range []string{"hosts", "ips"} {
			for _, b := range buckets(ub.Sub[kind]) {
				m[b.key()] = msTime(b.Sub["last"])
			}
		}
		last[ub.key()] = m
	}
	cutoff := until.Add(-opt.StaleAfter)
	for _, ac := range opt.Accounts {
		var best time.Time
		for src, t := range last[ac.User] {
			if report.HostMatches(ac.Host, src) && t.After(best) {
				best = t
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
	report.Finish(r, opt)
	return r, nil
}
