package processors

import (
	"strings"
	"testing"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
)

func load(t *testing.T, yaml string) []config.Processor {
	t.Helper()
	cfg, err := config.LoadYAML([]byte("inputs: [{paths: [/x]}]\nregistry: {path: /tmp/r.json}\noutputs: {stdout: {}}\n"+yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Processors
}

func ev(typ, user, ip string, tags ...string) *auditlogin.Event {
	e := &auditlogin.Event{Type: typ, MyHost: "db", User: auditlogin.Str(user), IP: auditlogin.Str(ip), Tags: tags}
	if user == "" {
		e.User = auditlogin.Null
	}
	return e
}

// Health checks without credentials from the load balancers are dropped,
// the monitoring account too; failures are routed; fields are added.
func TestChain(t *testing.T) {
	c, err := Compile(load(t, `
processors:
  - drop_event:
      when: {and: [{equals: {user: ""}}, {network: {ip: [10.1.0.0/16, 192.0.2.7]}}]}
  - drop_event:
      when: {equals: {user: monitor}}
  - add_fields: {fields: {env: prod}}
  - route:
      topic: security
      index: security-%{+yyyy.MM}
      when: {or: [{equals: {type: failed_login}}, {has_tags: [brute_force]}]}
  - add_fields:
      fields: {zone: dmz}
      when: {not: {network: {ip: [10.0.0.0/8]}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ev          *auditlogin.Event
		keep        bool
		topic, zone string
	}{
		{ev(auditlogin.TypeFailed, "", "10.1.2.3"), false, "", ""},         // LB health check
		{ev(auditlogin.TypeFailed, "", "192.0.2.7"), false, "", ""},        // another LB, by address
		{ev(auditlogin.TypeFailed, "", "10.2.0.1"), true, "security", ""},  // a probe from elsewhere
		{ev(auditlogin.TypeSuccess, "monitor", "10.9.9.9"), false, "", ""}, // the monitoring account
		{ev(auditlogin.TypeSuccess, "app", "10.9.9.9"), true, "", ""},
		{ev(auditlogin.TypeSuccess, "app", "203.0.113.5", "brute_force"), true, "security", "dmz"},
	}
	for i, c2 := range cases {
		keep := c.Apply(c2.ev)
		if keep != c2.keep {
			t.Errorf("case %d: keep %v, want %v", i, keep, c2.keep)
			continue
		}
		if !keep {
			continue
		}
		if c2.ev.Route.Topic != c2.topic || c2.ev.Fields["env"] != "prod" || fieldOf(c2.ev, "zone") != c2.zone {
			t.Errorf("case %d: route %+v fields %v", i, c2.ev.Route, c2.ev.Fields)
		}
	}
	// add_fields does not write into a map events share.
	shared := map[string]any{"dc": "fra1"}
	a, b := ev(auditlogin.TypeSuccess, "app", "10.0.0.1"), ev(auditlogin.TypeSuccess, "app", "10.0.0.2")
	a.Fields, b.Fields = shared, shared
	c.Apply(a)
	if len(shared) != 1 || a.Fields["env"] != "prod" || a.Fields["dc"] != "fra1" {
		t.Fatalf("shared %v, a %v", shared, a.Fields)
	}
}

// Every mistake is reported with its field path and what is expected.
func TestCompileErrors(t *testing.T) {
	_, err := Compile(load(t, `
processors:
  - drop_event: {}
  - route: {when: {equals: {type: failed_login}}}
  - add_fields: {fields: {a: b}, when: {equals: {usr: x}}}
  - route: {topic: t, when: {network: {ip: [10.0.0.0/33]}}}
  - drop_event: {when: {equals: {user: x}}}
    route: {topic: t}
  - add_fields: {fields: {a: b}, when: {}}
  - route: {index: "Security-%{+yyyy.MM}", when: {equals: {type: failed_login}}}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"processors[0].drop_event.when: required",
		"processors[1].route: a topic (Kafka) or an index (Elasticsearch) is expected",
		"processors[2].add_fields.when.equals.usr: unknown field",
		`processors[3].route.when.network.ip[0]: "10.0.0.0/33" is not a CIDR`,
		"processors[4]: exactly one of drop_event, add_fields, route",
		"processors[5].add_fields.when: an empty condition",
		`processors[6].route.index: "Security-%{+yyyy.MM}" is a name Elasticsearch refuses`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func fieldOf(ev *auditlogin.Event, name string) string {
	v, _ := ev.Field("fields." + name)
	return v
}

// add_fields keeps each value's type: a boolean is a JSON boolean, a number
// a number; a list is refused with its path.
func TestAddFieldsKeepTypes(t *testing.T) {
	c, err := Compile([]config.Processor{{AddFields: &config.AddFields{Fields: map[string]any{"primary": true, "weight": 3, "ratio": 0.5, "env": "prod"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e := ev(auditlogin.TypeSuccess, "app", "10.0.0.1")
	c.Apply(e)
	enc := string(e.AppendJSON(nil))
	if !strings.Contains(enc, `"fields":{"env":"prod","primary":true,"ratio":0.5,"weight":3}`) {
		t.Fatalf("fields lost their types: %s", enc)
	}
	if v := fieldOf(e, "primary"); v != "true" {
		t.Fatalf("fields.primary reads %q", v)
	}
	_, err = Compile([]config.Processor{{AddFields: &config.AddFields{Fields: map[string]any{"l": []any{1}}}}})
	if err == nil || !strings.Contains(err.Error(), "processors[0].add_fields.fields.l: ") {
		t.Fatalf("a list accepted: %v", err)
	}
}
