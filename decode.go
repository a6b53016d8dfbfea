package auditlogin

import (
	"encoding/json"
	"fmt"
	"time"
)

// wireEvent is an event as AppendJSON writes it.
type wireEvent struct {
	Timestamp  time.Time         `json:"@timestamp"`
	TS         string            `json:"ts"`
	Type       string            `json:"type"`
	MyHost     string            `json:"myhost"`
	Thread     string            `json:"thread"`
	User       *string           `json:"user"`
	PrivUser   *string           `json:"priv_user"`
	Host       *string           `json:"host"`
	IP         *string           `json:"ip"`
	IPOriginal string            `json:"ip_original"`
	ID         string            `json:"id"`
	Format     string            `json:"format"`
	Tags       []string          `json:"tags"`
	Log        wireLog           `json:"log"`
	Agent      *AgentInfo        `json:"agent"`
	Fields     map[string]string `json:"fields"`
}

type wireLog struct {
	File struct {
		Path string `json:"path"`
	} `json:"file"`
	Offset int64 `json:"offset"`
}

func nullable(s *string) NullString {
	if s == nil {
		return Null
	}
	return Str(*s)
}

// DecodeEvent reads back an event written by AppendJSON (a spooled event).
// Encoded is data itself, so the outputs send the bytes first encoded;
// the fields are what outputs route and key by. Bytes that were not valid
// UTF-8 come back as U+FFFD; the id, computed from the raw record, is kept.
func DecodeEvent(data []byte) (*Event, error) {
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("not an encoded event: %w", err)
	}
	if w.ID == "" {
		return nil, fmt.Errorf("not an encoded event: no id")
	}
	if w.Agent != nil && w.Agent.Hostname == "" && w.Agent.Version == "" {
		w.Agent = nil
	}
	tags := w.Tags
	if tags == nil {
		tags = []string{}
	}
	return &Event{Timestamp: w.Timestamp, TS: w.TS, Type: w.Type, MyHost: w.MyHost, Thread: w.Thread,
		User: nullable(w.User), PrivUser: nullable(w.PrivUser), Host: nullable(w.Host), IP: nullable(w.IP),
		IPOriginal: w.IPOriginal, ID: w.ID, Format: w.Format, Tags: tags, Path: w.Log.File.Path,
		Offset: w.Log.Offset, Fields: w.Fields, Agent: w.Agent, Encoded: data}, nil
}
