package auditlogin

import (
	"fmt"
	"strconv"
)

// Schema is the shape of the JSON an event is shipped as (event_schema:).
type Schema int

const (
	// SchemaAuditlogin is the seed's documented fields (docs/schema.md).
	SchemaAuditlogin Schema = iota
	// SchemaECS is the Elastic Common Schema: what Elastic Security's
	// authentication views and detection rules read.
	SchemaECS
	// SchemaBoth is the seed's fields and the ECS ones in one document. Two
	// seed names are the names of ECS objects (user and host), and a field
	// cannot be a string and an object at once in JSON or in an index: their
	// values are in ECS's user.name and source.domain; every other seed
	// field keeps its name and type.
	SchemaBoth
)

// ECSVersion is the ECS version the ecs and both schemas follow.
const ECSVersion = "8.11.0"

// Schemas are the names ParseSchema accepts, in order.
var Schemas = []string{"auditlogin", "ecs", "both"}

// ParseSchema reads an event_schema name.
func ParseSchema(name string) (Schema, error) {
	for i, n := range Schemas {
		if n == name {
			return Schema(i), nil
		}
	}
	return 0, fmt.Errorf("unknown event schema %q: want auditlogin, ecs or both", name)
}

func (s Schema) String() string {
	if int(s) < len(Schemas) {
		return Schemas[s]
	}
	return "schema(" + strconv.Itoa(int(s)) + ")"
}

// Append appends the event as one JSON object in schema s.
func (e *Event) Append(dst []byte, s Schema) []byte {
	if s == SchemaAuditlogin {
		return e.AppendJSON(dst)
	}
	return e.AppendECS(dst, s == SchemaBoth)
}

// outcome returns the ECS event.type and event.outcome of an event type.
func outcome(typ string) (evType, out string) {
	switch typ {
	case TypeSuccess:
		return "start", "success"
	case TypeFailed:
		return "start", "failure"
	case TypeLogout:
		return "end", "success"
	}
	return "info", "unknown"
}

// threadID returns the connection id as a number, when it is one.
func threadID(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// AppendECS appends the event in the Elastic Common Schema (docs/schema.md
// has the mapping), with the seed's fields beside when both is set.
// Hand-written like AppendJSON: it runs once per event.
func (e *Event) AppendECS(dst []byte, both bool) []byte {
	dst = append(dst, `{"@timestamp":"`...)
	dst = appendTimestamp(dst, e.Timestamp)
	dst = append(dst, '"')
	if both {
		dst = e.appendSeed(dst, false)
	}
	evType, out := outcome(e.Type)
	dst = append(dst, `,"event":{"kind":"event","category":["authentication","database"],"type":["`...)
	dst = append(dst, evType...)
	dst = append(dst, `"],"action":`...)
	dst = AppendJSONString(dst, e.Type)
	dst = append(dst, `,"outcome":"`...)
	dst = append(dst, out...)
	dst = append(dst, `","id":`...)
	dst = AppendJSONString(dst, e.ID)
	dst = append(dst, `,"module":"auditlogin","dataset":"auditlogin.`...)
	at := len(dst)
	dst = AppendJSONString(dst, e.Format)
	dst = append(dst[:at], dst[at+1:]...) // the format's opening quote out
	dst = append(dst, '}')

	// user: the name the client sent, and the account the server matched.
	if e.User.Valid || (e.PrivUser.Valid && e.PrivUser.S != "") {
		dst = append(dst, `,"user":{`...)
		sep := false
		if e.User.Valid {
			dst = append(dst, `"name":`...)
			dst = AppendJSONString(dst, e.User.S)
			sep = true
		}
		if e.PrivUser.Valid && e.PrivUser.S != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"effective":{"name":`...)
			dst = AppendJSONString(dst, e.PrivUser.S)
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}

	// source: the client.
	domain := e.Host.Valid && e.Host.S != "" && !isAddress(e.Host.S)
	if e.IP.Valid || e.Host.Valid && e.Host.S != "" {
		dst = append(dst, `,"source":{"address":`...)
		if e.Host.Valid && e.Host.S != "" {
			dst = AppendJSONString(dst, e.Host.S)
		} else {
			dst = AppendJSONString(dst, e.IP.S)
		}
		if e.IP.Valid && e.IP.S != "" {
			dst = append(dst, `,"ip":`...)
			dst = AppendJSONString(dst, e.IP.S)
		}
		if domain {
			dst = append(dst, `,"domain":`...)
			dst = AppendJSONString(dst, e.Host.S)
		}
		dst = append(dst, '}')
	}

	// host: the database server; service: what it is.
	dst = append(dst, `,"host":{"name":`...)
	dst = AppendJSONString(dst, e.MyHost)
	dst = append(dst, `},"service":{"type":"mysql"}`...)
	if n, ok := threadID(e.Thread); ok {
		dst = append(dst, `,"mysql":{"thread_id":`...)
		dst = strconv.AppendInt(dst, n, 10)
		dst = append(dst, '}')
	}

	// related: every user name and address, for pivoting across sources.
	users := 0
	if e.User.Valid && e.User.S != "" {
		users++
	}
	if e.PrivUser.Valid && e.PrivUser.S != "" && e.PrivUser.S != e.User.S {
		users++
	}
	if users > 0 || e.IP.Valid && e.IP.S != "" || domain {
		dst = append(dst, `,"related":{`...)
		sep := false
		if users > 0 {
			dst = append(dst, `"user":[`...)
			if e.User.Valid && e.User.S != "" {
				dst = AppendJSONString(dst, e.User.S)
				if users == 2 {
					dst = append(dst, ',')
				}
			}
			if e.PrivUser.Valid && e.PrivUser.S != "" && e.PrivUser.S != e.User.S {
				dst = AppendJSONString(dst, e.PrivUser.S)
			}
			dst = append(dst, ']')
			sep = true
		}
		if e.IP.Valid && e.IP.S != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"ip":[`...)
			dst = AppendJSONString(dst, e.IP.S)
			dst = append(dst, ']')
			sep = true
		}
		if domain {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"hosts":[`...)
			dst = AppendJSONString(dst, e.Host.S)
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}

	dst = e.appendTagsLog(dst)
	if e.Agent != nil {
		dst = append(dst, `,"agent":{"type":"auditlogin","name":`...)
		dst = AppendJSONString(dst, e.Agent.Hostname)
		if both {
			dst = append(dst, `,"hostname":`...)
			dst = AppendJSONString(dst, e.Agent.Hostname)
		}
		dst = append(dst, `,"version":`...)
		dst = AppendJSONString(dst, e.Agent.Version)
		dst = append(dst, '}')
	}
	if len(e.Fields) > 0 {
		// ECS's place for static key-value pairs is labels; both keeps
		// the seed's fields too.
		var room [8]string
		keys := sortedKeys(room[:0], e.Fields)
		dst = e.appendFields(dst, `,"labels":{`, keys)
		if both {
			dst = e.appendFields(dst, `,"fields":{`, keys)
		}
	}
	// What ECS has no field for: the record's own timestamp text, the source
	// format, the ip as written when it was not canonical, a client host that
	// is no domain name (an address, or empty), an empty priv_user (a failed
	// login; null has no user.effective either). With both, the seed's own
	// fields already hold all but the host.
	hostHere := e.Host.Valid && !domain
	if !both || hostHere {
		dst = append(dst, `,"auditlogin":{`...)
		sep := false
		if !both {
			dst = append(dst, `"ts":`...)
			dst = AppendJSONString(dst, e.TS)
			dst = append(dst, `,"format":`...)
			dst = AppendJSONString(dst, e.Format)
			if e.IPOriginal != "" {
				dst = append(dst, `,"ip_original":`...)
				dst = AppendJSONString(dst, e.IPOriginal)
			}
			if _, ok := threadID(e.Thread); !ok {
				dst = append(dst, `,"thread":`...)
				dst = AppendJSONString(dst, e.Thread)
			}
			if e.PrivUser.Valid && e.PrivUser.S == "" {
				dst = append(dst, `,"priv_user":""`...)
			}
			sep = true
		}
		if hostHere {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"host":`...)
			dst = AppendJSONString(dst, e.Host.S)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"ecs":{"version":"`+ECSVersion+`"}`...)
	return append(dst, '}')
}

// isAddress reports whether s is an IP address (a host column holding the
// client's address, as servers write with skip-name-resolve).
func isAddress(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':' || c == '%') {
			return false // a name: no parse (whose error would allocate)
		}
	}
	_, ok := CanonicalIP(s)
	return ok
}
