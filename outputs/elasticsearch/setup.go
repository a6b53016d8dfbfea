package elasticsearch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/auditlogin/auditlogin"
	"io"
	"mime/multipart"
	"net/http"
	"reflect"
	"strings"
)

// SetupConfig says what `auditlogin setup` installs.
type SetupConfig struct {
	TemplateName string // index template (and component template prefix), "auditlogin"
	ILMPolicy    string // ILM policy name, "auditlogin"
	DeleteAfter  string // delete indices this long after rollover/creation, e.g. 90d
	KibanaURL    string // import the saved objects there when set
	// Schema is the event_schema the events are shipped in: the template
	// and the Kibana objects use its fields.
	Schema auditlogin.Schema
}

// Mappings is an event schema in Elasticsearch terms: addresses as ip,
// times as date, numbers as long, every string as keyword (dynamic strings
// too). For ecs and both, the ECS fields with ECS's types.
func Mappings(schema auditlogin.Schema) map[string]any {
	kw := map[string]any{"type": "keyword", "ignore_above": 1024}
	obj := func(props map[string]any) map[string]any { return map[string]any{"properties": props} }
	// The agent ships only canonical addresses (Event.Normalize);
	// ignore_malformed is the second line of defence for documents
	// written by other tools.
	ip := map[string]any{"type": "ip", "ignore_malformed": true}
	long := map[string]any{"type": "long"}
	props := map[string]any{
		"@timestamp": map[string]any{"type": "date"},
		"tags":       kw,
		"log":        obj(map[string]any{"file": obj(map[string]any{"path": kw}), "offset": long}),
	}
	seed := map[string]any{
		"ts": kw, "type": kw, "myhost": kw, "thread": kw, "user": kw, "priv_user": kw, "host": kw,
		"ip": ip, "ip_original": kw, "id": kw, "format": kw,
		"agent":  obj(map[string]any{"hostname": kw, "version": kw}),
		"fields": map[string]any{"type": "object", "dynamic": true},
	}
	ecs := map[string]any{
		"event": obj(map[string]any{"kind": kw, "category": kw, "type": kw, "action": kw, "outcome": kw,
			"id": kw, "module": kw, "dataset": kw}),
		"user":       obj(map[string]any{"name": kw, "effective": obj(map[string]any{"name": kw})}),
		"source":     obj(map[string]any{"address": kw, "ip": ip, "domain": kw}),
		"host":       obj(map[string]any{"name": kw}),
		"service":    obj(map[string]any{"type": kw}),
		"mysql":      obj(map[string]any{"thread_id": long}),
		"related":    obj(map[string]any{"user": kw, "ip": ip, "hosts": kw}),
		"agent":      obj(map[string]any{"type": kw, "name": kw, "version": kw, "hostname": kw}),
		"labels":     map[string]any{"type": "object", "dynamic": true},
		"auditlogin": obj(map[string]any{"ts": kw, "format": kw, "ip_original": kw, "thread": kw, "priv_user": kw, "host": kw}),
		"ecs":        obj(map[string]any{"version": kw}),
	}
	if schema != auditlogin.SchemaECS {
		for k, v := range seed {
			props[k] = v
		}
	}
	if schema != auditlogin.SchemaAuditlogin {
		for k, v := range ecs {
			props[k] = v // over the seed's user, host and agent in both
		}
		if schema == auditlogin.SchemaBoth {
			props["fields"] = seed["fields"]
		}
	}
	return map[string]any{
		"dynamic_templates": []any{map[string]any{"strings_as_keyword": map[string]any{
			"match_mapping_type": "string", "mapping": kw}}},
		"properties": props,
	}
}

// IndexPattern is the wildcard pattern of the configured index (what the
// template and the data view cover).
func (o *Output) IndexPattern() string { return o.indexPattern() }

// indexPattern is the wildcard pattern of the configured index: its literal
// prefix followed by *.
func (o *Output) indexPattern() string {
	if o.cfg.DataStream {
		return o.cfg.Index
	}
	prefix := o.cfg.Index
	if i := strings.IndexAny(prefix, "%$"); i >= 0 {
		prefix = prefix[:i]
	}
	return prefix + "*"
}

// withHash adds _meta.auditlogin_hash, the hash of the object's content, by
// which a later setup tells "unchanged" without comparing what the cluster
// adds to stored objects.
func withHash(obj map[string]any) (map[string]any, string) {
	b, _ := json.Marshal(obj)
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:8])
	meta, _ := obj["_meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["managed_by"], meta["auditlogin_hash"] = "auditlogin", h
	obj["_meta"] = meta
	return obj, h
}

func (o *Output) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := o.tp.Perform(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, data, nil
}

// storedHash finds _meta.auditlogin_hash in a GET response, wherever the
// object sits in it.
func storedHash(data []byte) string {
	var v any
	json.Unmarshal(data, &v)
	var find func(any) string
	find = func(x any) string {
		switch t := x.(type) {
		case map[string]any:
			if m, ok := t["_meta"].(map[string]any); ok {
				if h, ok := m["auditlogin_hash"].(string); ok {
					return h
				}
			}
			for _, vv := range t {
				if h := find(vv); h != "" {
					return h
				}
			}
		case []any:
			for _, vv := range t {
				if h := find(vv); h != "" {
					return h
				}
			}
		}
		return ""
	}
	return find(v)
}

// put installs obj at path unless the stored one has the same hash.
func (o *Output) put(ctx context.Context, what, path string, obj map[string]any, hashIn func(map[string]any) string) (string, error) {
	code, data, err := o.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	want := hashIn(obj)
	if code == 200 && storedHash(data) == want {
		return what + ": unchanged", nil
	}
	verb := "created"
	if code == 200 {
		verb = "updated"
	}
	code, data, err = o.do(ctx, http.MethodPut, path, obj)
	if err != nil {
		return "", fmt.Errorf("installing %s: %w", what, err)
	}
	if code >= 300 {
		return "", fmt.Errorf("installing %s: %d %s", what, code, truncate(data, 300))
	}
	return what + ": " + verb, nil
}

// Setup installs the ILM policy (where the cluster has ILM), the component
// and index templates, and, with a Kibana URL, the saved objects. Running it
// again changes nothing and says so.
func (o *Output) Setup(ctx context.Context, sc SetupConfig) ([]string, error) {
	if sc.TemplateName == "" {
		sc.TemplateName = "auditlogin"
	}
	if sc.ILMPolicy == "" {
		sc.ILMPolicy = "auditlogin"
	}
	if sc.DeleteAfter == "" {
		sc.DeleteAfter = "90d"
	}
	var report []string
	code, _, err := o.do(ctx, http.MethodGet, "/_ilm/status", nil)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster: %w", err)
	}
	ilm := code == 200
	settings := map[string]any{}
	if ilm {
		policy, _ := withHash(map[string]any{"phases": map[string]any{
			"hot":    map[string]any{"actions": map[string]any{}},
			"delete": map[string]any{"min_age": sc.DeleteAfter, "actions": map[string]any{"delete": map[string]any{}}},
		}})
		line, err := o.put(ctx, "ILM policy "+sc.ILMPolicy+" (delete after "+sc.DeleteAfter+")", "/_ilm/policy/"+sc.ILMPolicy,
			map[string]any{"policy": policy}, func(m map[string]any) string {
				return m["policy"].(map[string]any)["_meta"].(map[string]any)["auditlogin_hash"].(string)
			})
		if err != nil {
			return report, err
		}
		report = append(report, line)
		settings["index.lifecycle.name"] = sc.ILMPolicy
	} else {
		report = append(report, "ILM: not available on this cluster (no lifecycle policy installed)")
	}
	hashOf := func(m map[string]any) string { return m["_meta"].(map[string]any)["auditlogin_hash"].(string) }
	comp, _ := withHash(map[string]any{"template": map[string]any{"mappings": Mappings(sc.Schema)}})
	line, err := o.put(ctx, "component template "+sc.TemplateName+"-mappings", "/_component_template/"+sc.TemplateName+"-mappings", comp, hashOf)
	if err != nil {
		return report, err
	}
	report = append(report, line)
	it := map[string]any{
		"index_patterns": []string{o.indexPattern()},
		"composed_of":    []string{sc.TemplateName + "-mappings"},
		"priority":       200,
		"template":       map[string]any{"settings": settings},
	}
	if o.cfg.DataStream {
		it["data_stream"] = map[string]any{}
	}
	it, _ = withHash(it)
	line, err = o.put(ctx, "index template "+sc.TemplateName+" ("+o.indexPattern()+")", "/_index_template/"+sc.TemplateName, it, hashOf)
	if err != nil {
		return report, err
	}
	report = append(report, line)
	if sc.KibanaURL != "" {
		line, err := o.kibanaImport(ctx, sc.KibanaURL, sc.Schema)
		if err != nil {
			return report, err
		}
		report = append(report, line)
	}
	return report, nil
}

// kibanaImport imports KibanaObjects unless every object is already there
// with the same attributes.
func (o *Output) kibanaImport(ctx context.Context, base string, schema auditlogin.Schema) (string, error) {
	base = strings.TrimRight(base, "/")
	objs := KibanaObjects(o.indexPattern(), schema)
	same := true
	for _, line := range bytes.Split(bytes.TrimSpace(objs), []byte("\n")) {
		var want struct {
			Type, ID   string
			Attributes map[string]any `json:"attributes"`
		}
		json.Unmarshal(line, &want)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/saved_objects/"+want.Type+"/"+want.ID, nil)
		o.kibanaAuth(req)
		res, err := o.kb.Do(req)
		if err != nil {
			return "", fmt.Errorf("cannot reach Kibana at %s: %w", base, err)
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var got struct {
			Attributes map[string]any `json:"attributes"`
		}
		json.Unmarshal(data, &got)
		if res.StatusCode != 200 || !reflect.DeepEqual(got.Attributes, want.Attributes) {
			same = false
			break
		}
	}
	if same {
		return "Kibana saved objects (data view, visualizations, dashboard): unchanged", nil
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "auditlogin.ndjson")
	fw.Write(objs)
	mw.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/saved_objects/_import?overwrite=true", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("kbn-xsrf", "auditlogin")
	o.kibanaAuth(req)
	res, err := o.kb.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot reach Kibana at %s: %w", base, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var r struct {
		Success      bool `json:"success"`
		SuccessCount int  `json:"successCount"`
	}
	json.Unmarshal(data, &r)
	if res.StatusCode != 200 || !r.Success {
		return "", fmt.Errorf("Kibana import failed: %d %s", res.StatusCode, truncate(data, 300))
	}
	return fmt.Sprintf("Kibana saved objects: %d imported (data view, visualizations, dashboard \"MySQL logins\")", r.SuccessCount), nil
}

func (o *Output) kibanaAuth(req *http.Request) {
	switch {
	case o.cfg.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+o.cfg.APIKey)
	case o.cfg.Username != "":
		req.SetBasicAuth(o.cfg.Username, o.cfg.Password)
	}
}
