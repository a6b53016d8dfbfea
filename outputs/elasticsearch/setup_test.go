package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

func TestSetupInstallsAndIsIdempotent(t *testing.T) {
	s := estest.New()
	defer s.Close()
	o := newOutput(t, Config{Hosts: []string{s.URL}})
	ctx := context.Background()
	sc := SetupConfig{DeleteAfter: "30d", KibanaURL: s.URL}
	first, err := o.Setup(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(first, "\n")
	for _, want := range []string{"ILM policy auditlogin (delete after 30d): created", "component template auditlogin-mappings: created",
		"index template auditlogin (auditlogin-*): created", "Kibana saved objects: 9 imported"} {
		if !strings.Contains(joined, want) {
			t.Errorf("first setup does not say %q:\n%s", want, joined)
		}
	}
	second, err := o.Setup(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != len(first) || len(second) < 4 {
		t.Errorf("second setup reported %d steps, the first %d: %q", len(second), len(first), second)
	}
	for _, line := range second {
		if !strings.HasSuffix(line, "unchanged") {
			t.Errorf("second setup changed something: %q", line)
		}
	}
	// The template maps the schema properly.
	var it struct {
		IndexPatterns []string `json:"index_patterns"`
		ComposedOf    []string `json:"composed_of"`
		Template      struct {
			Settings map[string]any `json:"settings"`
		} `json:"template"`
	}
	json.Unmarshal(s.Template("auditlogin"), &it)
	if it.IndexPatterns[0] != "auditlogin-*" || it.ComposedOf[0] != "auditlogin-mappings" || it.Template.Settings["index.lifecycle.name"] != "auditlogin" {
		t.Errorf("index template: %+v", it)
	}
	props := Mappings(auditlogin.SchemaAuditlogin)["properties"].(map[string]any)
	for f, typ := range map[string]string{"ip": "ip", "@timestamp": "date", "user": "keyword", "tags": "keyword", "myhost": "keyword"} {
		if props[f].(map[string]any)["type"] != typ {
			t.Errorf("%s is not mapped as %s", f, typ)
		}
	}
	// A changed setting is updated, and said so.
	third, err := o.Setup(ctx, SetupConfig{DeleteAfter: "60d"})
	if err != nil || !strings.Contains(strings.Join(third, "\n"), "delete after 60d): updated") {
		t.Errorf("changed policy: %v %v", third, err)
	}
	if s.SavedObject("dashboard", "auditlogin-dashboard") == nil || s.SavedObject("index-pattern", "auditlogin") == nil {
		t.Error("Kibana objects not imported")
	}
	// Events ship into the templated indices.
	if err := o.Write(ctx, outputtest.Events(5, "setup")); err != nil {
		t.Fatal(err)
	}
}

// examples/kibana/auditlogin.ndjson is what setup imports, for a manual import.
func TestKibanaObjectsFileIsCurrent(t *testing.T) {
	file, err := os.ReadFile("../../examples/kibana/auditlogin.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, KibanaObjects("auditlogin-*", auditlogin.SchemaAuditlogin)) {
		t.Fatal("examples/kibana/auditlogin.ndjson is stale: regenerate with auditlogin setup --export-kibana examples/kibana/auditlogin.ndjson")
	}
	if ecs, _ := os.ReadFile("../../examples/kibana/auditlogin-ecs.ndjson"); !bytes.Equal(ecs, KibanaObjects("auditlogin-*", auditlogin.SchemaECS)) {
		t.Fatal("examples/kibana/auditlogin-ecs.ndjson is stale: regenerate with auditlogin setup --export-kibana (a config with event_schema: ecs)")
	}
	titles := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(file), []byte("\n")) {
		var o struct {
			Type       string
			Attributes struct{ Title string }
			References []struct{ ID string }
		}
		if err := json.Unmarshal(line, &o); err != nil {
			t.Fatal(err)
		}
		titles[o.Attributes.Title] = true
	}
	for _, want := range []string{"Logins over time by type", "Top sources", "Root logins by source", "Connections without credentials (probes) by source",
		"Accounts by login count", "Failed logins by account and source", "Brute force and new sources", "MySQL logins"} {
		if !titles[want] {
			t.Errorf("no %q", want)
		}
	}
}

// Every saved object says which migrations its format has had; the brute
// force panel counts each tag with a filters aggregation (a terms split on
// tags would tie them with "failed").
func TestKibanaObjectsMigrationsAndFilters(t *testing.T) {
	for _, line := range bytes.Split(bytes.TrimSpace(KibanaObjects("auditlogin-*", auditlogin.SchemaAuditlogin)), []byte("\n")) {
		var o struct {
			Type, ID             string
			CoreMigrationVersion string `json:"coreMigrationVersion"`
			TypeMigrationVersion string `json:"typeMigrationVersion"`
			Attributes           struct {
				VisState string `json:"visState"`
			} `json:"attributes"`
		}
		if err := json.Unmarshal(line, &o); err != nil {
			t.Fatal(err)
		}
		if o.CoreMigrationVersion == "" || o.TypeMigrationVersion == "" {
			t.Errorf("%s %s has no migration versions", o.Type, o.ID)
		}
		if o.ID == "auditlogin-brute-force-new-source" {
			if !strings.Contains(o.Attributes.VisState, `"type":"filters"`) || !strings.Contains(o.Attributes.VisState, `tags:brute_force`) ||
				strings.Contains(o.Attributes.VisState, `"field":"tags"`) {
				t.Errorf("brute force panel: %s", o.Attributes.VisState)
			}
		}
	}
}

// mappedType returns the type a dotted field has in mappings ("" if none).
func mappedType(m map[string]any, field string) string {
	props := m["properties"].(map[string]any)
	parts := strings.Split(field, ".")
	for i, p := range parts {
		f, ok := props[p].(map[string]any)
		if !ok {
			return ""
		}
		if i == len(parts)-1 {
			if t, ok := f["type"].(string); ok {
				return t
			}
			return "object"
		}
		if props, ok = f["properties"].(map[string]any); !ok {
			return ""
		}
	}
	return ""
}

// Each schema's template maps its fields with ECS's types, and the Kibana
// objects of a schema use only fields its template maps (a panel on a field
// the index lacks is empty).
func TestSchemasTemplatesAndKibanaObjects(t *testing.T) {
	want := map[auditlogin.Schema]map[string]string{
		auditlogin.SchemaAuditlogin: {"ip": "ip", "user": "keyword", "type": "keyword", "myhost": "keyword", "event.action": ""},
		auditlogin.SchemaECS: {"source.ip": "ip", "related.ip": "ip", "user.name": "keyword", "user.effective.name": "keyword",
			"source.domain": "keyword", "host.name": "keyword", "event.action": "keyword", "event.outcome": "keyword",
			"event.category": "keyword", "mysql.thread_id": "long", "log.offset": "long", "@timestamp": "date",
			"related.user": "keyword", "auditlogin.ts": "keyword", "ip": "", "myhost": "", "agent.name": "keyword"},
		auditlogin.SchemaBoth: {"source.ip": "ip", "ip": "ip", "myhost": "keyword", "type": "keyword", "user.name": "keyword",
			"host.name": "keyword", "priv_user": "keyword", "agent.hostname": "keyword", "fields": "object", "labels": "object"},
	}
	for schema, fields := range want {
		m := Mappings(schema)
		for f, typ := range fields {
			if got := mappedType(m, f); got != typ {
				t.Errorf("%v: %s mapped as %q, want %q", schema, f, got, typ)
			}
		}
		for _, line := range bytes.Split(bytes.TrimSpace(KibanaObjects("auditlogin-*", schema)), []byte("\n")) {
			var o struct {
				Type, ID   string
				Attributes struct {
					VisState string `json:"visState"`
					Meta     struct {
						Search string `json:"searchSourceJSON"`
					} `json:"kibanaSavedObjectMeta"`
				} `json:"attributes"`
			}
			json.Unmarshal(line, &o)
			if o.Type != "visualization" {
				continue
			}
			var vs struct {
				Aggs []struct {
					Params struct {
						Field string `json:"field"`
					} `json:"params"`
				} `json:"aggs"`
			}
			json.Unmarshal([]byte(o.Attributes.VisState), &vs)
			for _, a := range vs.Aggs {
				if a.Params.Field != "" && mappedType(m, a.Params.Field) == "" {
					t.Errorf("%v: %s aggregates on %s, which the template does not map", schema, o.ID, a.Params.Field)
				}
			}
			var ss struct {
				Query struct {
					Query string `json:"query"`
				} `json:"query"`
			}
			json.Unmarshal([]byte(o.Attributes.Meta.Search), &ss)
			for _, term := range strings.Fields(ss.Query.Query) {
				if f, _, ok := strings.Cut(term, ":"); ok && mappedType(m, f) == "" {
					t.Errorf("%v: %s queries %s, which the template does not map", schema, o.ID, f)
				}
			}
		}
	}
	// setup installs the schema's template.
	s := estest.New()
	defer s.Close()
	o := newOutput(t, Config{Hosts: []string{s.URL}})
	if _, err := o.Setup(context.Background(), SetupConfig{Schema: auditlogin.SchemaECS}); err != nil {
		t.Fatal(err)
	}
	var ct struct {
		Template struct {
			Mappings map[string]any `json:"mappings"`
		} `json:"template"`
	}
	json.Unmarshal(s.ComponentTemplate("auditlogin-mappings"), &ct)
	if got := mappedType(ct.Template.Mappings, "source.ip"); got != "ip" {
		t.Errorf("installed template maps source.ip as %q", got)
	}
}
