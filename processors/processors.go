// Package processors applies the configuration's processors: list to each
// event after enrichment: drop_event (health checks of a load balancer, a
// monitoring account), add_fields, and route (failures to a security
// topic or index). Conditions are plain field matches, CIDR ranges for ips
// and tags, combined with and/or/not: no scripting language.
package processors

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
)

// Chain is the compiled list.
type Chain struct {
	steps []step
}

type step struct {
	when   cond // nil: every event
	drop   bool
	fields map[string]any
	topic  string
	index  string
}

type cond func(*auditlogin.Event) bool

var datePattern = regexp.MustCompile(`%\{\+[^}]+\}`)

// Compile checks the processors and returns the chain; every error names
// its field path (processors[1].route.when.network.ip[0]: ...).
func Compile(ps []config.Processor) (*Chain, error) {
	var errs config.Errors
	add := func(path, format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	c := &Chain{}
	for i, p := range ps {
		path := fmt.Sprintf("processors[%d]", i)
		n := 0
		for _, set := range []bool{p.DropEvent != nil, p.AddFields != nil, p.Route != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			add(path, "exactly one of drop_event, add_fields, route is expected")
			continue
		}
		var s step
		var when *config.Condition
		switch {
		case p.DropEvent != nil:
			s.drop, when, path = true, p.DropEvent.When, path+".drop_event"
			if when == nil {
				add(path+".when", "required: a condition (dropping every event is not a processor's job)")
				continue
			}
		case p.AddFields != nil:
			s.fields, when, path = p.AddFields.Fields, p.AddFields.When, path+".add_fields"
			if len(s.fields) == 0 {
				add(path+".fields", "at least one field is expected, such as {env: prod}")
			}
			typed := make(map[string]any, len(s.fields))
			for k, v := range s.fields {
				if tv, ok := auditlogin.FieldValue(v); ok {
					typed[k] = tv
				} else {
					add(path+".fields."+k, "%v (expected a string, number or boolean)", v)
				}
			}
			s.fields = typed
		case p.Route != nil:
			s.topic, s.index, when, path = p.Route.Topic, p.Route.Index, p.Route.When, path+".route"
			if s.topic == "" && s.index == "" {
				add(path, "a topic (Kafka) or an index (Elasticsearch) is expected")
			}
			if name := datePattern.ReplaceAllString(s.index, "x"); name != strings.ToLower(name) || strings.ContainsAny(name, `\/*?"<>| ,#:`) || strings.HasPrefix(name, "_") || strings.HasPrefix(name, "-") {
				add(path+".index", "%q is a name Elasticsearch refuses (lower case, no \\ / * ? \" < > | space , # :; %%{+yyyy.MM.dd} for the date)", s.index)
			}
			if strings.ContainsAny(s.topic, " /\\") {
				add(path+".topic", "%q is not a Kafka topic name (letters, digits, . _ -)", s.topic)
			}
			if when == nil {
				add(path+".when", "required: a condition (to route every event, set the output's topic or index)")
				continue
			}
		}
		if when != nil {
			s.when = compileCond(*when, path+".when", add)
		}
		c.steps = append(c.steps, s)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func compileCond(c config.Condition, path string, add func(string, string, ...any)) cond {
	var parts []cond
	n := 0
	for k, v := range c.Equals {
		if !auditlogin.ValidField(k) {
			add(path+".equals."+k, "unknown field (expected one of: %s, or fields.NAME)", strings.Join(auditlogin.FieldNames, ", "))
			continue
		}
		parts = append(parts, func(ev *auditlogin.Event) bool { got, _ := ev.Field(k); return got == v })
		n++
	}
	for k, cidrs := range c.Network {
		if k != "ip" {
			add(path+".network."+k, "only ip holds an address")
			continue
		}
		var prefixes []netip.Prefix
		for j, s := range cidrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				if a, aerr := netip.ParseAddr(s); aerr == nil {
					p, err = a.Prefix(a.BitLen())
				}
			}
			if err != nil {
				add(fmt.Sprintf("%s.network.ip[%d]", path, j), "%q is not a CIDR range such as 10.0.0.0/8 or an address", s)
				continue
			}
			prefixes = append(prefixes, p.Masked())
		}
		parts = append(parts, func(ev *auditlogin.Event) bool {
			a, err := netip.ParseAddr(ev.IP.S)
			if !ev.IP.Valid || err != nil {
				return false
			}
			a = a.Unmap()
			for _, p := range prefixes {
				if p.Contains(a) {
					return true
				}
			}
			return false
		})
		n++
	}
	if len(c.HasTags) > 0 {
		tags := c.HasTags
		parts = append(parts, func(ev *auditlogin.Event) bool {
			for _, t := range tags {
				if !slices.Contains(ev.Tags, t) {
					return false
				}
			}
			return true
		})
		n++
	}
	// and: every sub-condition holds; or: at least one does.
	for _, group := range []struct {
		name string
		cs   []config.Condition
		want bool // the value that decides the group early
	}{{"and", c.And, false}, {"or", c.Or, true}} {
		if len(group.cs) == 0 {
			continue
		}
		var subs []cond
		for j, sc := range group.cs {
			subs = append(subs, compileCond(sc, fmt.Sprintf("%s.%s[%d]", path, group.name, j), add))
		}
		want := group.want
		parts = append(parts, func(ev *auditlogin.Event) bool {
			for _, s := range subs {
				if s(ev) == want {
					return want
				}
			}
			return !want
		})
		n++
	}
	if c.Not != nil {
		sub := compileCond(*c.Not, path+".not", add)
		parts = append(parts, func(ev *auditlogin.Event) bool { return !sub(ev) })
		n++
	}
	if n == 0 && len(c.Equals) == 0 && len(c.Network) == 0 {
		add(path, "an empty condition (expected equals, network, has_tags, and, or or not)")
	}
	return func(ev *auditlogin.Event) bool {
		for _, p := range parts {
			if !p(ev) {
				return false
			}
		}
		return true
	}
}

// Len is how many processors the chain has.
func (c *Chain) Len() int { return len(c.steps) }

// Apply runs the chain on ev and reports whether to keep it. Static fields
// are added to a copy of the event's map (events may share one).
func (c *Chain) Apply(ev *auditlogin.Event) bool {
	for _, s := range c.steps {
		if s.when != nil && !s.when(ev) {
			continue
		}
		switch {
		case s.drop:
			return false
		case s.fields != nil:
			f := make(map[string]any, len(ev.Fields)+len(s.fields))
			for k, v := range ev.Fields {
				f[k] = v
			}
			for k, v := range s.fields {
				f[k] = v
			}
			ev.Fields = f
		default:
			if s.topic != "" {
				ev.Route.Topic = s.topic
			}
			if s.index != "" {
				ev.Route.Index = s.index
			}
		}
	}
	return true
}
