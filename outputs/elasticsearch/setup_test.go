package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

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
	props := Mappings()["properties"].(map[string]any)
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
	if !bytes.Equal(file, KibanaObjects("auditlogin-*")) {
		t.Fatal("examples/kibana/auditlogin.ndjson is stale: regenerate with auditlogin setup --export-kibana examples/kibana/auditlogin.ndjson")
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
	for _, line := range bytes.Split(bytes.TrimSpace(KibanaObjects("auditlogin-*")), []byte("\n")) {
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
