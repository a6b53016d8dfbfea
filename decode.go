package auditlogin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// wireEvent is an event as Append writes it in any schema: the seed's
// fields, the ECS ones, or both. user and host are a string in the seed's
// schema and an object in ECS, so they are read raw.
type wireEvent struct {
	Timestamp  time.Time       `json:"@timestamp"`
	TS         *string         `json:"ts"`
	Type       string          `json:"type"`
	MyHost     string          `json:"myhost"`
	Thread     *string         `json:"thread"`
	User       json.RawMessage `json:"user"`
	PrivUser   *string         `json:"priv_user"`
	Host       json.RawMessage `json:"host"`
	IP         *string         `json:"ip"`
	IPOriginal string          `json:"ip_original"`
	ID         string          `json:"id"`
	Format     string          `json:"format"`
	Tags       []string        `json:"tags"`
	Log        wireLog         `json:"log"`
	Agent      *struct {
		Hostname string `json:"hostname"`
		Name     string `json:"name"`
		Version  string `json:"version"`
	} `json:"agent"`
	Fields map[string]json.RawMessage `json:"fields"`

	// ECS
	Event *struct {
		ID     string `json:"id"`
		Action string `json:"action"`
	} `json:"event"`
	Source *struct {
		IP     *string `json:"ip"`
		Domain *string `json:"domain"`
	} `json:"source"`
	MySQL *struct {
		ThreadID json.Number `json:"thread_id"`
	} `json:"mysql"`
	Labels     map[string]json.RawMessage `json:"labels"`
	Auditlogin *struct {
		TS         *string `json:"ts"`
		Format     string  `json:"format"`
		IPOriginal string  `json:"ip_original"`
		Thread     *string `json:"thread"`
		PrivUser   *string `json:"priv_user"`
		Host       *string `json:"host"`
	} `json:"auditlogin"`
}

type wireLog struct {
	File struct {
		Path string `json:"path"`
	} `json:"file"`
	Offset int64 `json:"offset"`
}

type ecsUser struct {
	Name      *string `json:"name"`
	Effective *struct {
		Name *string `json:"name"`
	} `json:"effective"`
}

func nullable(s *string) NullString {
	if s == nil {
		return Null
	}
	return Str(*s)
}

// DecodeEvent reads back an event written by Append in any schema (a spooled
// event, an NDJSON file of shipped events). Encoded is data itself, so the
// outputs send the bytes first encoded; the fields are what outputs route
// and key by, and what reports count. Bytes that were not valid UTF-8 come
// back as U+FFFD; the id, computed from the raw record, is kept.
func DecodeEvent(data []byte) (*Event, error) {
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("not an encoded event: %w", err)
	}
	ev := &Event{Timestamp: w.Timestamp, Type: w.Type, MyHost: w.MyHost, PrivUser: nullable(w.PrivUser),
		IP: nullable(w.IP), IPOriginal: w.IPOriginal, ID: w.ID, Format: w.Format, Tags: w.Tags,
		Path: w.Log.File.Path, Offset: w.Log.Offset, Encoded: data}
	if w.TS != nil {
		ev.TS = *w.TS
	}
	if w.Thread != nil {
		ev.Thread = *w.Thread
	}
	if w.Agent != nil && (w.Agent.Hostname != "" || w.Agent.Name != "" || w.Agent.Version != "") {
		ev.Agent = &AgentInfo{Hostname: w.Agent.Hostname, Version: w.Agent.Version}
		if ev.Agent.Hostname == "" {
			ev.Agent.Hostname = w.Agent.Name
		}
	}
	fields := w.Fields
	if fields == nil {
		fields = w.Labels
	}
	for k, raw := range fields {
		v, err := fieldValue(raw)
		if err != nil {
			return nil, fmt.Errorf("not an encoded event: fields.%s: %w", k, err)
		}
		if ev.Fields == nil {
			ev.Fields = make(map[string]any, len(fields))
		}
		ev.Fields[k] = v
	}

	// The seed's user and host are strings; ECS's are objects.
	switch u := bytes.TrimSpace(w.User); {
	case len(u) > 0 && u[0] == '"':
		var s string
		json.Unmarshal(u, &s)
		ev.User = Str(s)
	case len(u) > 0 && u[0] == '{':
		var eu ecsUser
		if err := json.Unmarshal(u, &eu); err != nil {
			return nil, fmt.Errorf("not an encoded event: user: %w", err)
		}
		ev.User = nullable(eu.Name)
		if w.PrivUser == nil && eu.Effective != nil {
			ev.PrivUser = nullable(eu.Effective.Name)
		}
	}
	switch h := bytes.TrimSpace(w.Host); {
	case len(h) > 0 && h[0] == '"':
		var s string
		json.Unmarshal(h, &s)
		ev.Host = Str(s)
	case len(h) > 0 && h[0] == '{':
		var eh struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(h, &eh); err != nil {
			return nil, fmt.Errorf("not an encoded event: host: %w", err)
		}
		if ev.MyHost == "" {
			ev.MyHost = eh.Name
		}
	}
	if e := w.Event; e != nil {
		if ev.ID == "" {
			ev.ID = e.ID
		}
		if ev.Type == "" {
			ev.Type = e.Action
		}
	}
	if s := w.Source; s != nil {
		if s.Domain != nil {
			ev.Host = Str(*s.Domain)
		}
		if w.IP == nil {
			ev.IP = nullable(s.IP)
		}
	}
	if m := w.MySQL; m != nil && w.Thread == nil {
		ev.Thread = m.ThreadID.String()
	}
	if a := w.Auditlogin; a != nil {
		if a.TS != nil {
			ev.TS = *a.TS
		}
		if a.Format != "" {
			ev.Format = a.Format
		}
		if a.IPOriginal != "" {
			ev.IPOriginal = a.IPOriginal
		}
		if a.Thread != nil {
			ev.Thread = *a.Thread
		}
		if a.PrivUser != nil && !ev.PrivUser.Valid {
			ev.PrivUser = Str(*a.PrivUser)
		}
		if a.Host != nil {
			ev.Host = Str(*a.Host)
		}
	}
	if ev.ID == "" {
		return nil, fmt.Errorf("not an encoded event: no id")
	}
	if ev.Tags == nil {
		ev.Tags = []string{}
	}
	return ev, nil
}

// fieldValue reads a static field's value with its type: a string, a bool,
// an int64 when the number is integral, else a float64.
func fieldValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty")
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case 't', 'f':
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil, fmt.Errorf("%s is not a string, number or boolean", raw)
	}
	return f, nil
}
