// Package estest is an Elasticsearch-API test server, written from the
// Elasticsearch and Kibana API documentation, that behaves like the real one
// where the agent depends on it: the X-Elastic-Product header, /_bulk NDJSON
// with per-item results, `create` conflicts as 409 on a repeated _id,
// scriptable per-item 429/5xx/400, index and component templates, ILM
// policies, _count, _search (ids, term, terms, exists, bool, range, and the
// terms/date_histogram/filter/cardinality/min/max aggregations the report
// uses), and Kibana's saved objects import. It stores documents: tests count
// and compare them.
package estest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// Server is the test server. Its exported fields may be changed while it
// runs, under Lock/Unlock.
type Server struct {
	*httptest.Server

	mu sync.Mutex
	// ItemFault, when set, is asked for every bulk item: a non-zero status
	// (429, 500, 400, ...) fails that item with it.
	ItemFault func(index, id string) int
	// Down makes every request fail with 503 (a cluster that is unavailable).
	Down bool
	// BulkDelay answers every bulk request that much later, however many
	// are in flight: a cluster far away (it never queues).
	BulkDelay time.Duration
	// Username/Password or APIKey, when set, are required.
	Username, Password, APIKey string
	// MaxBuckets is search.max_buckets: a search whose aggregations would
	// answer with more buckets fails, as in Elasticsearch (0: its default,
	// 65,536).
	MaxBuckets int

	indices    map[string]*index
	templates  map[string]json.RawMessage
	components map[string]json.RawMessage
	policies   map[string]json.RawMessage
	kibana     map[string]json.RawMessage // "type/id" → object
	bulks      int
	ops        map[string]int // bulk actions received, by op
	overwrites int            // documents replaced by an index action
	conflicts  int            // create actions refused with 409
	refused    int            // requests answered 503 while Down
	filtered   int            // bulk answers cut down by a filter_path

	// Search caches, valid for one version of the indices: a report pages
	// through the same query many times.
	version   int
	matchMemo map[string][]map[string]any
	compMemo  map[string]compResult
}

type compResult struct {
	names  []string
	keys   []compositeKey
	groups map[string][]map[string]any
}

// Refused returns how many requests were answered 503 because of Down: a
// test of an outage checks that the outage was met.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Ops returns how many bulk actions of each kind (create, index) arrived.
func (s *Server) Ops() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.ops {
		out[k] = v
	}
	return out
}

// Filtered returns how many bulk requests asked for a filter_path (and
// got their answer filtered by it).
func (s *Server) Filtered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filtered
}

// Overwrites returns how many documents an index action replaced: an
// exactly-once shipper using create never causes one.
func (s *Server) Overwrites() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overwrites
}

// Conflicts returns how many create actions were refused with 409 (the
// document was already there: a replay).
func (s *Server) Conflicts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conflicts
}

type index struct {
	ids  map[string]int
	docs []doc
}

type doc struct {
	id     string
	src    json.RawMessage
	parsed map[string]any // src decoded, once (searches read every document)
}

// New starts a server on 127.0.0.1.
func New() *Server {
	s := newServer()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLS starts a server with TLS (httptest's certificate: Certificate()).
func NewTLS() *Server {
	s := newServer()
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

func newServer() *Server {
	return &Server{indices: map[string]*index{}, templates: map[string]json.RawMessage{},
		components: map[string]json.RawMessage{}, policies: map[string]json.RawMessage{}, kibana: map[string]json.RawMessage{}}
}

// Lock guards changes to the exported fields.
func (s *Server) Lock() { s.mu.Lock() }

// Unlock ends a Lock.
func (s *Server) Unlock() { s.mu.Unlock() }

// Docs returns the documents of every index matching pattern, by _id.
func (s *Server) Docs(pattern string) map[string]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]json.RawMessage{}
	for name, ix := range s.indices {
		if ok, _ := path.Match(pattern, name); ok {
			for _, d := range ix.docs {
				out[d.id] = d.src
			}
		}
	}
	return out
}

// Count returns how many documents the indices matching pattern hold.
func (s *Server) Count(pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name, ix := range s.indices {
		if ok, _ := path.Match(pattern, name); ok {
			n += len(ix.docs)
		}
	}
	return n
}

// Indices returns the index names.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.indices {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Template returns a stored index template (nil if none).
func (s *Server) Template(name string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.templates[name]
}

// ComponentTemplate returns a stored component template (nil if none).
func (s *Server) ComponentTemplate(name string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.components[name]
}

// SavedObject returns a Kibana saved object (nil if none).
func (s *Server) SavedObject(typ, id string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kibana[typ+"/"+id]
}

// Bulks returns how many bulk requests were served.
func (s *Server) Bulks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bulks
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func errBody(typ, reason string) map[string]any {
	return map[string]any{"type": typ, "reason": reason}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	s.mu.Lock()
	down, user, pass, key, delay := s.Down, s.Username, s.Password, s.APIKey, s.BulkDelay
	if down {
		s.refused++
	}
	s.mu.Unlock()
	if down {
		writeJSON(w, 503, map[string]any{"error": errBody("cluster_block_exception", "unavailable (test)"), "status": 503})
		return
	}
	if user != "" || key != "" {
		u, p, ok := r.BasicAuth()
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		okKey := key != "" && strings.EqualFold(scheme, "ApiKey") && cred == key // schemes are case-insensitive (RFC 7235)
		if !(okKey || (user != "" && ok && u == user && p == pass)) {
			writeJSON(w, 401, map[string]any{"error": errBody("security_exception", "missing authentication credentials"), "status": 401})
			return
		}
	}
	p := strings.Trim(r.URL.Path, "/")
	parts := strings.Split(p, "/")
	switch {
	case p == "":
		writeJSON(w, 200, map[string]any{"name": "estest", "cluster_name": "estest", "cluster_uuid": "test",
			"version": map[string]any{"number": "8.19.0", "build_flavor": "default"}, "tagline": "You Know, for Search"})
	case p == "_bulk" || (len(parts) == 2 && parts[1] == "_bulk"):
		time.Sleep(delay)
		def := ""
		if len(parts) == 2 {
			def = parts[0]
		}
		s.bulk(w, r, def)
	case parts[0] == "_index_template" && len(parts) == 2:
		s.store(w, r, s.templates, parts[1], "index_templates")
	case parts[0] == "_component_template" && len(parts) == 2:
		s.store(w, r, s.components, parts[1], "component_templates")
	case p == "_ilm/status":
		writeJSON(w, 200, map[string]any{"operation_mode": "RUNNING"})
	case len(parts) == 3 && parts[0] == "_ilm" && parts[1] == "policy":
		s.store(w, r, s.policies, parts[2], "")
	case len(parts) == 2 && parts[1] == "_count":
		hits := s.match(parts[0], r)
		writeJSON(w, 200, map[string]any{"count": len(hits)})
	case len(parts) == 2 && parts[1] == "_search":
		s.search(w, r, parts[0])
	case p == "api/saved_objects/_import":
		s.kibanaImport(w, r)
	case len(parts) == 4 && parts[0] == "api" && parts[1] == "saved_objects":
		s.mu.Lock()
		obj := s.kibana[parts[2]+"/"+parts[3]]
		s.mu.Unlock()
		if obj == nil {
			writeJSON(w, 404, map[string]any{"statusCode": 404, "error": "Not Found"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(obj)
	default:
		writeJSON(w, 404, map[string]any{"error": errBody("no_handler", "no handler for "+r.Method+" "+r.URL.Path), "status": 404})
	}
}

// store serves GET/HEAD/PUT/DELETE of a named JSON object.
func (s *Server) store(w http.ResponseWriter, r *http.Request, m map[string]json.RawMessage, name, listKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		if !json.Valid(body) {
			writeJSON(w, 400, map[string]any{"error": errBody("parse_exception", "request body is not JSON"), "status": 400})
			return
		}
		m[name] = body
		writeJSON(w, 200, map[string]any{"acknowledged": true})
	case http.MethodDelete:
		delete(m, name)
		writeJSON(w, 200, map[string]any{"acknowledged": true})
	default:
		v, ok := m[name]
		if !ok {
			writeJSON(w, 404, map[string]any{"error": errBody("resource_not_found_exception", name+" not found"), "status": 404})
			return
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(200)
			return
		}
		switch listKey {
		case "index_templates":
			writeJSON(w, 200, map[string]any{listKey: []any{map[string]any{"name": name, "index_template": v}}})
		case "component_templates":
			writeJSON(w, 200, map[string]any{listKey: []any{map[string]any{"name": name, "component_template": v}}})
		default:
			writeJSON(w, 200, map[string]any{name: map[string]any{"policy": json.RawMessage(v)}})
		}
	}
}

// bulk applies NDJSON actions: create (409 on an existing _id) and index.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request, defIndex string) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var items []map[string]any
	hasErrors := false
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bulks++
	s.version++ // cached search results are stale
	s.matchMemo, s.compMemo = nil, nil
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(line, &action); err != nil || len(action) != 1 {
			writeJSON(w, 400, map[string]any{"error": errBody("illegal_argument_exception", "Malformed action/metadata line"), "status": 400})
			return
		}
		var op string
		var meta struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		for k, v := range action {
			op, meta = k, v
		}
		if s.ops == nil {
			s.ops = map[string]int{}
		}
		s.ops[op]++
		if !sc.Scan() {
			writeJSON(w, 400, map[string]any{"error": errBody("illegal_argument_exception", "missing document line"), "status": 400})
			return
		}
		src := append(json.RawMessage(nil), bytes.TrimSpace(sc.Bytes())...)
		if meta.Index == "" {
			meta.Index = defIndex
		}
		result := map[string]any{"_index": meta.Index, "_id": meta.ID}
		status := 0
		if s.ItemFault != nil {
			status = s.ItemFault(meta.Index, meta.ID)
		}
		switch {
		case status == 429:
			result["error"] = errBody("es_rejected_execution_exception", "rejected execution (test)")
		case status >= 500:
			result["error"] = errBody("unavailable_shards_exception", "primary shard is not active (test)")
		case status >= 400:
			result["error"] = errBody("document_parsing_exception", "failed to parse field [ip] of type [ip] (test)")
		case !json.Valid(src):
			status = 400
			result["error"] = errBody("document_parsing_exception", "failed to parse: not JSON")
		case badIP(src) != "":
			// As Elasticsearch's ip type without ignore_malformed: an
			// address with a leading zero ("10.0.0.03") is refused.
			status = 400
			result["error"] = errBody("document_parsing_exception", "failed to parse field [ip] of type [ip]: '"+badIP(src)+"' is not an IP string literal.")
		case op != "create" && op != "index":
			status = 400
			result["error"] = errBody("illegal_argument_exception", "unsupported action "+op)
		default:
			ix := s.indices[meta.Index]
			if ix == nil {
				ix = &index{ids: map[string]int{}}
				s.indices[meta.Index] = ix
			}
			if meta.ID == "" {
				meta.ID = fmt.Sprintf("auto-%d-%d", time.Now().UnixNano(), len(ix.docs))
				result["_id"] = meta.ID
			}
			if i, exists := ix.ids[meta.ID]; exists {
				if op == "create" {
					status = 409
					s.conflicts++
					result["error"] = errBody("version_conflict_engine_exception", "["+meta.ID+"]: version conflict, document already exists")
					break
				}
				s.overwrites++
				ix.docs[i].src, ix.docs[i].parsed = src, nil
				status = 200
				break
			}
			ix.ids[meta.ID] = len(ix.docs)
			ix.docs = append(ix.docs, doc{id: meta.ID, src: src})
			status = 201
			result["result"] = "created"
		}
		result["status"] = status
		if status >= 300 {
			hasErrors = true
		}
		items = append(items, map[string]any{op: result})
	}
	resp := map[string]any{"took": 1, "errors": hasErrors, "items": items}
	if fp := r.URL.Query().Get("filter_path"); fp != "" {
		s.filtered++
		resp = filterBulk(resp, fp)
	}
	writeJSON(w, 200, resp)
}

// filterBulk applies a filter_path of top-level keys and items.*.KEY paths
// (what bulk clients ask for) to a bulk response, as Elasticsearch does:
// only the listed keys are kept, "took" too only if listed.
func filterBulk(resp map[string]any, filterPath string) map[string]any {
	out := map[string]any{}
	keep := map[string]bool{}
	for _, p := range strings.Split(filterPath, ",") {
		if k, ok := strings.CutPrefix(p, "items.*."); ok {
			keep[k] = true
			continue
		}
		if v, ok := resp[p]; ok && p != "items" {
			out[p] = v
		}
	}
	if len(keep) > 0 {
		var items []map[string]any
		for _, it := range resp["items"].([]map[string]any) {
			f := map[string]any{}
			for op, res := range it {
				kept := map[string]any{}
				for k, v := range res.(map[string]any) {
					if keep[k] {
						kept[k] = v
					}
				}
				f[op] = kept
			}
			items = append(items, f)
		}
		out["items"] = items
	}
	return out
}

// match returns the documents of the indices matching pattern (comma
// separated, * wildcards) that the request's query selects.
func (s *Server) match(pattern string, r *http.Request) []map[string]any {
	var body struct {
		Query map[string]any `json:"query"`
	}
	data, _ := io.ReadAll(r.Body)
	if len(data) > 0 {
		json.Unmarshal(data, &body)
	}
	return s.docsMatching(pattern, body.Query)
}

func (s *Server) docsMatching(pattern string, query map[string]any) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, _ := json.Marshal(query)
	memo := fmt.Sprintf("%d\x00%s\x00%s", s.version, pattern, q)
	if docs, ok := s.matchMemo[memo]; ok {
		return docs
	}
	var names []string
	for name := range s.indices {
		for _, p := range strings.Split(pattern, ",") {
			if ok, _ := path.Match(p, name); ok {
				names = append(names, name)
				break
			}
		}
	}
	sort.Strings(names)
	var out []map[string]any
	for _, name := range names {
		docs := s.indices[name].docs
		for i := range docs {
			d := &docs[i]
			if d.parsed == nil {
				if json.Unmarshal(d.src, &d.parsed) != nil {
					continue
				}
			}
			m := make(map[string]any, len(d.parsed)+2)
			for k, v := range d.parsed {
				m[k] = v
			}
			m["_id"], m["_index"] = d.id, name
			if matches(m, query) {
				out = append(out, m)
			}
		}
	}
	if s.matchMemo == nil {
		s.matchMemo = map[string][]map[string]any{}
	}
	s.matchMemo[memo] = out
	return out
}

// field reads a dotted field of a document.
func field(doc map[string]any, name string) (any, bool) {
	var cur any = doc
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func equal(v, want any) bool {
	for _, x := range asList(v) {
		if fmt.Sprint(x) == fmt.Sprint(want) {
			return true
		}
	}
	return false
}

// matches applies the query subset: match_all, ids, term, terms, exists,
// range (on RFC 3339 strings), bool (must, filter, should, must_not).
func matches(doc map[string]any, q map[string]any) bool {
	if len(q) == 0 {
		return true
	}
	for kind, arg := range q {
		a, _ := arg.(map[string]any)
		switch kind {
		case "match_all":
		case "ids":
			ok := false
			for _, id := range asList(a["values"]) {
				ok = ok || id == doc["_id"]
			}
			if !ok {
				return false
			}
		case "term":
			for f, v := range a {
				if m, ok := v.(map[string]any); ok {
					v = m["value"]
				}
				got, _ := field(doc, f)
				if !equal(got, v) {
					return false
				}
			}
		case "terms":
			for f, vs := range a {
				got, _ := field(doc, f)
				ok := false
				for _, v := range asList(vs) {
					ok = ok || equal(got, v)
				}
				if !ok {
					return false
				}
			}
		case "exists":
			v, ok := field(doc, fmt.Sprint(a["field"]))
			if !ok || v == nil {
				return false
			}
		case "range":
			for f, b := range a {
				bounds, _ := b.(map[string]any)
				got, _ := field(doc, f)
				gs := fmt.Sprint(got)
				if v, ok := bounds["gte"]; ok && gs < fmt.Sprint(v) {
					return false
				}
				if v, ok := bounds["lte"]; ok && gs > fmt.Sprint(v) {
					return false
				}
				if v, ok := bounds["lt"]; ok && gs >= fmt.Sprint(v) {
					return false
				}
			}
		case "bool":
			for _, c := range append(asList(a["must"]), asList(a["filter"])...) {
				cm, _ := c.(map[string]any)
				if !matches(doc, cm) {
					return false
				}
			}
			if should := asList(a["should"]); len(should) > 0 {
				ok := false
				for _, c := range should {
					cm, _ := c.(map[string]any)
					ok = ok || matches(doc, cm)
				}
				if !ok {
					return false
				}
			}
			for _, c := range asList(a["must_not"]) {
				cm, _ := c.(map[string]any)
				if matches(doc, cm) {
					return false
				}
			}
		default:
			return false // a query this server does not know matches nothing
		}
	}
	return true
}

func (s *Server) search(w http.ResponseWriter, r *http.Request, pattern string) {
	var body struct {
		Query map[string]any            `json:"query"`
		Size  *int                      `json:"size"`
		Aggs  map[string]map[string]any `json:"aggs"`
	}
	data, _ := io.ReadAll(r.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			writeJSON(w, 400, map[string]any{"error": errBody("parsing_exception", err.Error()), "status": 400})
			return
		}
	}
	docs := s.docsMatching(pattern, body.Query)
	size := 10
	if body.Size != nil {
		size = *body.Size
	}
	var hits []any
	for i, d := range docs {
		if i >= size {
			break
		}
		src := make(map[string]any, len(d))
		for k, v := range d {
			if k != "_id" && k != "_index" {
				src[k] = v
			}
		}
		hits = append(hits, map[string]any{"_index": d["_index"], "_id": d["_id"], "_source": src})
	}
	res := map[string]any{"took": 1, "timed_out": false,
		"hits": map[string]any{"total": map[string]any{"value": len(docs), "relation": "eq"}, "hits": hits}}
	if len(body.Aggs) > 0 {
		q, _ := json.Marshal(body.Query)
		aggs := aggregateMemo(docs, body.Aggs, func(spec map[string]any, compute func() compResult) compResult {
			// The composite's grouping, for this version, pattern and query
			// (its "after" aside): computed once for all the pages.
			c := map[string]any{}
			for k, v := range spec {
				if k != "after" {
					c[k] = v
				}
			}
			key, _ := json.Marshal(c)
			s.mu.Lock()
			memo := fmt.Sprintf("%d\x00%s\x00%s\x00%s", s.version, pattern, q, key)
			r, ok := s.compMemo[memo]
			s.mu.Unlock()
			if ok {
				return r
			}
			r = compute()
			s.mu.Lock()
			if s.compMemo == nil {
				s.compMemo = map[string]compResult{}
			}
			s.compMemo[memo] = r
			s.mu.Unlock()
			return r
		})
		s.mu.Lock()
		limit := s.MaxBuckets
		s.mu.Unlock()
		if limit <= 0 {
			limit = 65536
		}
		if n := countBuckets(aggs); n > limit {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "search_phase_execution_exception",
				"reason": "all shards failed", "caused_by": map[string]any{"type": "too_many_buckets_exception",
					"reason": fmt.Sprintf("Trying to create too many buckets. Must be less than or equal to: [%d] but this number of buckets was exceeded: [%d]. This limit can be set by changing the [search.max_buckets] cluster level setting.", limit, n)}},
				"status": 400})
			return
		}
		res["aggregations"] = aggs
	}
	writeJSON(w, 200, res)
}

// countBuckets counts the buckets of multi-bucket aggregations in an
// answer, nested ones included, as search.max_buckets does.
func countBuckets(v any) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "buckets" {
				if l, ok := e.([]any); ok {
					n += len(l)
				}
			}
			n += countBuckets(e)
		}
	case []any:
		for _, e := range x {
			n += countBuckets(e)
		}
	}
	return n
}

// compositeKey is one composite bucket's values, nil where a field is
// missing (missing_bucket), with their text for ordering.
type compositeKey struct {
	vals []any
	strs []string
}

// less orders keys as Elasticsearch does by default: each source ascending,
// missing values first.
func (a compositeKey) less(b compositeKey) bool {
	for i := range a.vals {
		x, y := a.vals[i] == nil, b.vals[i] == nil
		switch {
		case x && y:
			continue
		case x:
			return true
		case y:
			return false
		}
		if a.strs[i] != b.strs[i] {
			return a.strs[i] < b.strs[i]
		}
	}
	return false
}

func (a compositeKey) id() string {
	var b strings.Builder
	for i, v := range a.vals {
		if v == nil {
			b.WriteString("\x01")
		} else {
			b.WriteString(a.strs[i])
		}
		b.WriteByte(0)
	}
	return b.String()
}

func newKey(vals []any) compositeKey {
	k := compositeKey{vals: vals, strs: make([]string, len(vals))}
	for i, v := range vals {
		if v != nil {
			k.strs[i] = fmt.Sprint(v)
		}
	}
	return k
}

// groupComposite groups docs by every combination of the composite's
// sources' values (terms sources; missing_bucket), in Elasticsearch's order.
func groupComposite(docs []map[string]any, spec map[string]any) compResult {
	var r compResult
	var fields []string
	var missing []bool
	for _, src := range asList(spec["sources"]) {
		for name, def := range src.(map[string]any) {
			t, _ := def.(map[string]any)["terms"].(map[string]any)
			r.names = append(r.names, name)
			fields = append(fields, fmt.Sprint(t["field"]))
			mb, _ := t["missing_bucket"].(bool)
			missing = append(missing, mb)
		}
	}
	r.groups = map[string][]map[string]any{}
	byID := map[string]compositeKey{}
next:
	for _, d := range docs {
		vals := make([]any, len(fields))
		for i, f := range fields {
			v, ok := field(d, f)
			if !ok || v == nil {
				if !missing[i] {
					continue next
				}
				continue
			}
			vals[i] = v
		}
		k := newKey(vals)
		id := k.id()
		if _, ok := byID[id]; !ok {
			byID[id] = k
		}
		r.groups[id] = append(r.groups[id], d)
	}
	for _, k := range byID {
		r.keys = append(r.keys, k)
	}
	sort.Slice(r.keys, func(i, j int) bool { return r.keys[i].less(r.keys[j]) })
	return r
}

// pageComposite returns the page of size buckets after "after".
func pageComposite(r compResult, spec map[string]any) (names []string, keys []compositeKey, groups map[string][]map[string]any, afterKey *compositeKey) {
	size := 10
	if n, ok := spec["size"].(float64); ok {
		size = int(n)
	}
	keys = r.keys
	if after, ok := spec["after"].(map[string]any); ok {
		vals := make([]any, len(r.names))
		for i, n := range r.names {
			vals[i] = after[n]
		}
		a := newKey(vals)
		keys = keys[sort.Search(len(keys), func(i int) bool { return a.less(keys[i]) }):]
	}
	if len(keys) > size {
		keys = keys[:size]
	}
	if len(keys) > 0 {
		afterKey = &keys[len(keys)-1]
	}
	return r.names, keys, r.groups, afterKey
}

// aggregate computes terms, composite, date_histogram (1h), filter,
// cardinality, min and max over docs, with sub-aggregations.
func aggregate(docs []map[string]any, aggs map[string]map[string]any) map[string]any {
	return aggregateMemo(docs, aggs, nil)
}

// aggregateMemo is aggregate with a memo for top-level composite
// groupings (nil: none; sub-aggregations never use one, their documents
// differ per bucket).
func aggregateMemo(docs []map[string]any, aggs map[string]map[string]any, memo func(map[string]any, func() compResult) compResult) map[string]any {
	out := map[string]any{}
	for name, spec := range aggs {
		sub, _ := spec["aggs"].(map[string]any)
		subAggs := map[string]map[string]any{}
		for k, v := range sub {
			subAggs[k], _ = v.(map[string]any)
		}
		withSub := func(m map[string]any, ds []map[string]any) map[string]any {
			for k, v := range aggregate(ds, subAggs) {
				m[k] = v
			}
			return m
		}
		switch {
		case spec["terms"] != nil:
			t := spec["terms"].(map[string]any)
			f := fmt.Sprint(t["field"])
			size := 10
			if n, ok := t["size"].(float64); ok {
				size = int(n)
			}
			groups := map[string][]map[string]any{}
			for _, d := range docs {
				v, ok := field(d, f)
				if !ok || v == nil {
					continue
				}
				for _, x := range asList(v) {
					groups[fmt.Sprint(x)] = append(groups[fmt.Sprint(x)], d)
				}
			}
			keys := make([]string, 0, len(groups))
			for k := range groups {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				if len(groups[keys[i]]) != len(groups[keys[j]]) {
					return len(groups[keys[i]]) > len(groups[keys[j]])
				}
				return keys[i] < keys[j]
			})
			var buckets []any
			for i, k := range keys {
				if i >= size {
					break
				}
				buckets = append(buckets, withSub(map[string]any{"key": k, "doc_count": len(groups[k])}, groups[k]))
			}
			out[name] = map[string]any{"buckets": buckets}
		case spec["composite"] != nil:
			cspec := spec["composite"].(map[string]any)
			group := func() compResult { return groupComposite(docs, cspec) }
			var cr compResult
			if memo != nil {
				cr = memo(cspec, group)
			} else {
				cr = group()
			}
			names, keys, groups, afterKey := pageComposite(cr, cspec)
			keyMap := func(k compositeKey) map[string]any {
				m := map[string]any{}
				for i, n := range names {
					m[n] = k.vals[i]
				}
				return m
			}
			buckets := []any{}
			for _, k := range keys {
				g := groups[k.id()]
				buckets = append(buckets, withSub(map[string]any{"key": keyMap(k), "doc_count": len(g)}, g))
			}
			res := map[string]any{"buckets": buckets}
			if afterKey != nil {
				res["after_key"] = keyMap(*afterKey)
			}
			out[name] = res
		case spec["date_histogram"] != nil:
			f := fmt.Sprint(spec["date_histogram"].(map[string]any)["field"])
			groups := map[int64][]map[string]any{}
			for _, d := range docs {
				v, _ := field(d, f)
				t, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v))
				if err != nil {
					continue
				}
				h := t.UTC().Truncate(time.Hour).UnixMilli()
				groups[h] = append(groups[h], d)
			}
			keys := make([]int64, 0, len(groups))
			for k := range groups {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
			var buckets []any
			for _, k := range keys {
				buckets = append(buckets, withSub(map[string]any{"key": k,
					"key_as_string": time.UnixMilli(k).UTC().Format(time.RFC3339), "doc_count": len(groups[k])}, groups[k]))
			}
			out[name] = map[string]any{"buckets": buckets}
		case spec["filter"] != nil:
			q, _ := spec["filter"].(map[string]any)
			var ds []map[string]any
			for _, d := range docs {
				if matches(d, q) {
					ds = append(ds, d)
				}
			}
			out[name] = withSub(map[string]any{"doc_count": len(ds)}, ds)
		case spec["cardinality"] != nil:
			f := fmt.Sprint(spec["cardinality"].(map[string]any)["field"])
			seen := map[string]bool{}
			for _, d := range docs {
				if v, ok := field(d, f); ok && v != nil {
					seen[fmt.Sprint(v)] = true
				}
			}
			out[name] = map[string]any{"value": len(seen)}
		case spec["min"] != nil || spec["max"] != nil:
			isMin := spec["min"] != nil
			a := spec["max"]
			if isMin {
				a = spec["min"]
			}
			f := fmt.Sprint(a.(map[string]any)["field"])
			var best time.Time
			for _, d := range docs {
				v, _ := field(d, f)
				t, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v))
				if err != nil {
					continue
				}
				if best.IsZero() || (isMin && t.Before(best)) || (!isMin && t.After(best)) {
					best = t
				}
			}
			if best.IsZero() {
				out[name] = map[string]any{"value": nil}
			} else {
				out[name] = map[string]any{"value": float64(best.UnixMilli()), "value_as_string": best.UTC().Format(time.RFC3339Nano)}
			}
		}
	}
	return out
}

// kibanaImport serves POST /api/saved_objects/_import: a multipart file of
// NDJSON saved objects; overwrite=true replaces existing ones.
func (s *Server) kibanaImport(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("kbn-xsrf") == "" {
		writeJSON(w, 400, map[string]any{"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."})
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeJSON(w, 400, map[string]any{"statusCode": 400, "message": err.Error()})
		return
	}
	var file []byte
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		if part.FormName() == "file" {
			file, _ = io.ReadAll(part)
		}
		part.Close()
	}
	overwrite := r.URL.Query().Get("overwrite") == "true"
	n := 0
	var errs []any
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range bytes.Split(file, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var obj struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		if json.Unmarshal(line, &obj) != nil || obj.Type == "" || obj.ID == "" {
			continue // export summary lines
		}
		key := obj.Type + "/" + obj.ID
		if _, exists := s.kibana[key]; exists && !overwrite {
			errs = append(errs, map[string]any{"id": obj.ID, "type": obj.Type, "error": map[string]any{"type": "conflict"}})
			continue
		}
		s.kibana[key] = append(json.RawMessage(nil), line...)
		n++
	}
	writeJSON(w, 200, map[string]any{"success": len(errs) == 0, "successCount": n, "errors": errs})
}

// ipFields are the fields the agent's templates map as ip, in every schema.
var ipFields = []string{"ip", "source.ip", "related.ip"}

// badIP returns the first value of an ip field in src that Elasticsearch's
// ip type refuses ("" if none): not an address as InetAddresses reads one
// (netip.ParseAddr: no leading zeros in IPv4 octets).
func badIP(src []byte) string {
	var doc map[string]any
	if json.Unmarshal(src, &doc) != nil {
		return ""
	}
	for _, f := range ipFields {
		v, ok := field(doc, f)
		if !ok {
			continue
		}
		vals, isList := v.([]any)
		if !isList {
			vals = []any{v}
		}
		for _, x := range vals {
			if str, ok := x.(string); ok {
				if _, err := netip.ParseAddr(str); err != nil {
					return str
				}
			}
		}
	}
	return ""
}
