package elasticsearch

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/auditlogin/auditlogin"
)

// vis is one legacy visualization: a title, a chart type, a KQL filter and
// its bucket aggregations (field, size) after a count metric.
type vis struct {
	id, title, chart, query string
	buckets                 []bucket
	dateHistogram           bool
}

type bucket struct {
	field string
	size  int
	split bool // a split series (colors) rather than rows/x-axis
	// filters: one row per KQL query (label: query) instead of terms on field
	filters [][2]string
}

// dashboardVisualizations answer the questions the audit log exists for.
var dashboardVisualizations = []vis{
	{id: "auditlogin-logins-over-time", title: "Logins over time by type", chart: "histogram", dateHistogram: true,
		buckets: []bucket{{field: "type", size: 3, split: true}}},
	{id: "auditlogin-top-sources", title: "Top sources", chart: "table",
		buckets: []bucket{{field: "ip", size: 20}, {field: "host", size: 5}}},
	{id: "auditlogin-root-logins", title: "Root logins by source", chart: "table", query: "tags:root and type:successful_login",
		buckets: []bucket{{field: "host", size: 20}, {field: "ip", size: 20}}},
	{id: "auditlogin-probes", title: "Connections without credentials (probes) by source", chart: "table", query: "tags:no_credentials",
		buckets: []bucket{{field: "ip", size: 50}}},
	{id: "auditlogin-accounts", title: "Accounts by login count", chart: "table", query: "type:successful_login",
		buckets: []bucket{{field: "user", size: 100}}},
	{id: "auditlogin-failed", title: "Failed logins by account and source", chart: "table", query: "type:failed_login",
		buckets: []bucket{{field: "user", size: 50}, {field: "ip", size: 10}}},
	{id: "auditlogin-brute-force-new-source", title: "Brute force and new sources", chart: "table", query: "tags:brute_force or tags:new_source",
		// One row per tag by a filters aggregation: a top-2 terms split on
		// tags tied with "failed", which every brute-force event also has.
		buckets: []bucket{{filters: [][2]string{{"brute force", "tags:brute_force"}, {"new source", "tags:new_source"}}},
			{field: "ip", size: 20}, {field: "user", size: 20}}},
}

// The saved objects are written in the format these Kibana migrations
// produce (legacy visState visualizations, 8.0 panels): an import into a
// newer Kibana runs only the migrations after them, none before.
const (
	migratedCore          = "8.0.0"
	migratedIndexPattern  = "8.0.0"
	migratedVisualization = "8.0.0"
	migratedDashboard     = "8.0.0"
)

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ecsNames are the ECS fields of the seed's names the panels use.
var ecsNames = map[string]string{"type": "event.action", "ip": "source.ip", "host": "source.domain", "user": "user.name"}

// inSchema returns the visualization with the fields of schema (ECS names
// for ecs and both).
func (v vis) inSchema(schema auditlogin.Schema) vis {
	if schema == auditlogin.SchemaAuditlogin {
		return v
	}
	for seed, ecs := range ecsNames {
		v.query = strings.ReplaceAll(v.query, seed+":", ecs+":")
	}
	bs := make([]bucket, len(v.buckets))
	for i, b := range v.buckets {
		if n, ok := ecsNames[b.field]; ok {
			b.field = n
		}
		bs[i] = b
	}
	v.buckets = bs
	return v
}

func (v vis) object() map[string]any {
	aggs := []any{map[string]any{"id": "1", "enabled": true, "type": "count", "schema": "metric", "params": map[string]any{}}}
	n := 2
	if v.dateHistogram {
		aggs = append(aggs, map[string]any{"id": "2", "enabled": true, "type": "date_histogram", "schema": "segment",
			"params": map[string]any{"field": "@timestamp", "interval": "auto", "min_doc_count": 1}})
		n++
	}
	for _, b := range v.buckets {
		schema := "bucket"
		if v.chart != "table" {
			schema = "segment"
		}
		if b.split {
			schema = "group"
		}
		if len(b.filters) > 0 {
			var fs []any
			for _, f := range b.filters {
				fs = append(fs, map[string]any{"label": f[0], "input": map[string]any{"query": f[1], "language": "kuery"}})
			}
			aggs = append(aggs, map[string]any{"id": mustJSON(n), "enabled": true, "type": "filters", "schema": schema,
				"params": map[string]any{"filters": fs}})
			n++
			continue
		}
		aggs = append(aggs, map[string]any{"id": mustJSON(n), "enabled": true, "type": "terms", "schema": schema,
			"params": map[string]any{"field": b.field, "size": b.size, "order": "desc", "orderBy": "1", "missingBucket": true, "missingBucketLabel": "(null)"}})
		n++
	}
	params := map[string]any{"perPage": 20, "showTotal": true}
	if v.chart == "histogram" {
		params = map[string]any{"type": "histogram", "addLegend": true, "legendPosition": "right", "addTooltip": true}
	}
	return map[string]any{
		"type": "visualization", "id": v.id, "coreMigrationVersion": migratedCore, "typeMigrationVersion": migratedVisualization,
		"attributes": map[string]any{
			"title":       v.title,
			"description": "auditlogin",
			"visState":    mustJSON(map[string]any{"title": v.title, "type": v.chart, "aggs": aggs, "params": params}),
			"uiStateJSON": "{}",
			"kibanaSavedObjectMeta": map[string]any{"searchSourceJSON": mustJSON(map[string]any{
				"query": map[string]any{"query": v.query, "language": "kuery"}, "filter": []any{},
				"indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"})},
		},
		"references": []any{map[string]any{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": "auditlogin"}},
	}
}

// KibanaObjects returns the saved objects as NDJSON: the data view on the
// index pattern, one visualization per question, and the dashboard.
func KibanaObjects(pattern string, schema auditlogin.Schema) []byte {
	var buf bytes.Buffer
	write := func(o map[string]any) {
		b, _ := json.Marshal(o)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	write(map[string]any{"type": "index-pattern", "id": "auditlogin", "coreMigrationVersion": migratedCore, "typeMigrationVersion": migratedIndexPattern,
		"attributes": map[string]any{"title": pattern, "timeFieldName": "@timestamp", "name": "MySQL logins (auditlogin)"}})
	var panels, refs []any
	for i, v := range dashboardVisualizations {
		write(v.inSchema(schema).object())
		w, h := 24, 15
		if i == 0 {
			w = 48
		}
		x, y := 0, 0
		if i > 0 {
			x, y = ((i-1)%2)*24, 15+((i-1)/2)*15
		}
		ref := "panel_" + mustJSON(i)
		panels = append(panels, map[string]any{"panelIndex": mustJSON(i + 1), "gridData": map[string]any{"x": x, "y": y, "w": w, "h": h, "i": mustJSON(i + 1)},
			"panelRefName": ref, "embeddableConfig": map[string]any{}, "version": "8.0.0"})
		refs = append(refs, map[string]any{"name": ref, "type": "visualization", "id": v.id})
	}
	write(map[string]any{"type": "dashboard", "id": "auditlogin-dashboard", "coreMigrationVersion": migratedCore, "typeMigrationVersion": migratedDashboard,
		"attributes": map[string]any{
			"title":       "MySQL logins",
			"description": "Who logs in, from where, how often; root, probes, failures, brute force, new sources (auditlogin)",
			"panelsJSON":  mustJSON(panels), "optionsJSON": `{"useMargins":true,"hidePanelTitles":false}`,
			"timeRestore": false,
			"kibanaSavedObjectMeta": map[string]any{"searchSourceJSON": mustJSON(map[string]any{
				"query": map[string]any{"query": "", "language": "kuery"}, "filter": []any{}})},
		},
		"references": refs})
	return buf.Bytes()
}
