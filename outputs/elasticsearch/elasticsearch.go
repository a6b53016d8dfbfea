// Package elasticsearch is the Elasticsearch output: bulk requests of
// `create` actions whose _id is the event id, so that a replayed event (after
// kill -9, a retry, a restart) is refused with 409 and the index holds each
// event exactly once. Per-item results are read from every bulk response:
// 429 and 5xx items are retried alone; mapping and other 4xx errors are
// permanent (dead-lettered with the item's error). It uses go-elasticsearch's
// esapi and elastic-transport-go only: not the typed API, whose build takes
// minutes.
package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/elastic-transport-go/v8/elastictransport"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/clientcfg"
)

// DefaultIndex is a daily index from the event's own @timestamp (UTC), so a
// replayed event always lands in the index that already holds it.
const DefaultIndex = "auditlogin-%{+yyyy.MM.dd}"

// Config configures the output. Zero values take the defaults noted.
type Config struct {
	Hosts         []string // http(s)://host:port[/base path]
	Username      string
	Password      string // resolved by the caller from password/password_env/password_file
	APIKey        string // base64 "id:key", resolved likewise
	CAFile        string
	CAFingerprint string // SHA-256 of the server's certificate, hex
	CertFile      string
	KeyFile       string
	InsecureTLS   bool
	Index         string // DefaultIndex; %{+yyyy.MM.dd} is the event's date, ${field} an event field
	DataStream    bool   // Index names a data stream (no date; see docs for the dedup caveat)
	Pipeline      string // ingest pipeline
	BulkMaxEvents int    // events per bulk request (1000)
	BulkMaxBytes  int    // bytes per bulk request (5 MiB)
	Workers       int    // bulk requests in flight at once (4)
	Timeout       time.Duration
	RetryInitial  time.Duration
	RetryMax      time.Duration
	Headers       map[string]string // extra HTTP headers on every request
	TemplateName  string            // checked by Check ("auditlogin")
}

// Output is the Elasticsearch output.
type Output struct {
	cfg    Config
	tp     *elastictransport.Client
	kb     *http.Client // Kibana: the same TLS (CA file, client certificate) and auth
	routes sync.Map     // a route processor's index → *indexTemplate
	index  *indexTemplate
}

// New checks cfg and returns an Output (no request is made).
func New(cfg Config) (*Output, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("hosts: at least one URL is required")
	}
	if cfg.Index == "" {
		cfg.Index = DefaultIndex
	}
	if cfg.BulkMaxEvents <= 0 {
		cfg.BulkMaxEvents = 1000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.BulkMaxBytes <= 0 {
		cfg.BulkMaxBytes = 5 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.TemplateName == "" {
		cfg.TemplateName = "auditlogin"
	}
	it, err := parseIndex(cfg.Index)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if cfg.DataStream && it.dated {
		return nil, errors.New("index: a data stream name has no date in it (data_stream: true)")
	}
	var urls []*url.URL
	for _, h := range cfg.Hosts {
		u, err := url.Parse(h)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("hosts: %q is not a URL such as http://es-1:9200", h)
		}
		urls = append(urls, u)
	}
	if cfg.Username != "" && cfg.APIKey != "" {
		return nil, errors.New("set either username/password or api_key, not both")
	}
	httpTr := http.DefaultTransport.(*http.Transport).Clone()
	httpTr.ResponseHeaderTimeout = cfg.Timeout
	tc, err := clientcfg.TLS(cfg.CAFile, cfg.CertFile, cfg.KeyFile, "", cfg.InsecureTLS)
	if err != nil {
		return nil, fmt.Errorf("tls.%w", err)
	}
	httpTr.TLSClientConfig = tc
	hdr := http.Header{}
	for k, v := range cfg.Headers {
		hdr.Set(k, v)
	}
	tp, err := elastictransport.New(elastictransport.Config{
		URLs: urls, Username: cfg.Username, Password: cfg.Password, APIKey: cfg.APIKey,
		CertificateFingerprint: strings.ToLower(strings.ReplaceAll(cfg.CAFingerprint, ":", "")),
		Header:                 hdr, Transport: httpTr, DisableRetry: true, // the pipeline retries, with backoff and per item
		UserAgent: "auditlogin",
	})
	if err != nil {
		return nil, err
	}
	kbTr := httpTr.Clone()
	return &Output{cfg: cfg, tp: tp, index: it, kb: &http.Client{Transport: kbTr, Timeout: cfg.Timeout}}, nil
}

// Name implements auditlogin.Output.
func (o *Output) Name() string { return "elasticsearch" }

// RetryBackoff implements auditlogin.Retrier.
func (o *Output) RetryBackoff() (time.Duration, time.Duration) {
	return o.cfg.RetryInitial, o.cfg.RetryMax
}

// Close implements auditlogin.Output.
func (o *Output) Close() error { return nil }

// indexTemplate renders index names: literal text, %{+DATE} (Joda-style
// yyyy, MM, dd, HH of @timestamp in UTC) and ${field}.
type indexTemplate struct {
	parts []indexPart
	dated bool
	// hourly: the name depends on @timestamp's hour at most (no field, no
	// finer date part): last keeps the name of the last hour rendered, so
	// that most events take it without formatting a date.
	hourly bool
	last   atomic.Pointer[hourName]
}

type hourName struct {
	hour int64 // unix seconds / 3600
	name string
}

type indexPart struct {
	lit, date, field string
}

var indexToken = regexp.MustCompile(`%\{\+([^}]+)\}|\$\{([a-z_.A-Z0-9]+)\}`)

func parseIndex(s string) (*indexTemplate, error) {
	it := &indexTemplate{}
	last := 0
	for _, m := range indexToken.FindAllStringSubmatchIndex(s, -1) {
		it.parts = append(it.parts, indexPart{lit: s[last:m[0]]})
		switch {
		case m[2] >= 0:
			layout := strings.NewReplacer("yyyy", "2006", "MM", "01", "dd", "02", "HH", "15").Replace(s[m[2]:m[3]])
			it.parts = append(it.parts, indexPart{date: layout})
			it.dated = true
		default:
			f := s[m[4]:m[5]]
			if !auditlogin.ValidField(f) {
				return nil, fmt.Errorf("unknown field ${%s}", f)
			}
			it.parts = append(it.parts, indexPart{field: f})
		}
		last = m[1]
	}
	it.parts = append(it.parts, indexPart{lit: s[last:]})
	it.hourly = hourly(it)
	name := it.render(&auditlogin.Event{Timestamp: time.Now()})
	if name == "" || strings.ToLower(name) != name || strings.ContainsAny(name, `\/*?"<>| ,#:`) || strings.HasPrefix(name, "_") || strings.HasPrefix(name, "-") {
		return nil, fmt.Errorf("%q makes index names Elasticsearch refuses (lower case, no \\ / * ? \" < > | space , # :)", s)
	}
	return it, nil
}

var invalidIndexChars = regexp.MustCompile(`[^a-z0-9._+-]`)

// hourly reports whether the template has no field and renders the same
// name throughout an hour (its date parts are yyyy, MM, dd or HH, not a
// minute or second that Go's layout would also take), tried on hours of a
// few dates.
func hourly(it *indexTemplate) bool {
	for _, p := range it.parts {
		if p.field != "" {
			return false
		}
	}
	for _, t := range []time.Time{time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), time.Date(2027, 11, 30, 23, 0, 0, 0, time.UTC), time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC)} {
		first := it.format(&auditlogin.Event{Timestamp: t})
		for _, d := range []time.Duration{time.Nanosecond, 59*time.Second + 999*time.Millisecond, 37*time.Minute + 11*time.Second + 123456789, time.Hour - time.Nanosecond} {
			if it.format(&auditlogin.Event{Timestamp: t.Add(d)}) != first {
				return false
			}
		}
	}
	return true
}

func (it *indexTemplate) render(ev *auditlogin.Event) string {
	if !it.hourly {
		return it.format(ev)
	}
	hour := ev.Timestamp.Unix()
	hour = (hour - (hour%3600+3600)%3600) / 3600 // floor, before 1970 too
	if l := it.last.Load(); l != nil && l.hour == hour {
		return l.name
	}
	name := it.format(ev)
	it.last.Store(&hourName{hour: hour, name: name})
	return name
}

func (it *indexTemplate) format(ev *auditlogin.Event) string {
	var b strings.Builder
	for _, p := range it.parts {
		switch {
		case p.date != "":
			b.WriteString(ev.Timestamp.UTC().Format(p.date))
		case p.field != "":
			v, _ := ev.Field(p.field)
			v = invalidIndexChars.ReplaceAllString(strings.ToLower(v), "_")
			if v == "" {
				v = "_"
			}
			b.WriteString(v)
		default:
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// Workers implements auditlogin.Concurrent.
func (o *Output) Workers() int { return o.cfg.Workers }

// IndexFor returns the index (or data stream) an event goes to.
func (o *Output) IndexFor(ev *auditlogin.Event) string {
	if ev.Route.Index != "" { // a route processor's
		if v, ok := o.routes.Load(ev.Route.Index); ok {
			return v.(*indexTemplate).render(ev)
		}
		it, err := parseIndex(ev.Route.Index)
		if err != nil {
			it = &indexTemplate{parts: []indexPart{{lit: invalidIndexChars.ReplaceAllString(strings.ToLower(ev.Route.Index), "_")}}}
		}
		o.routes.Store(ev.Route.Index, it)
		return it.render(ev)
	}
	return o.index.render(ev)
}

// bulkFilterPath asks the cluster to answer a bulk request with what is
// read of it (errors; each item's status and error), as Filebeat and
// Logstash do: an item's answer is {"create":{"status":201}}, not its
// index, id, version, shards and sequence numbers (about 200 bytes) for
// the cluster to write and the agent to read.
const bulkFilterPath = "errors,items.*.error,items.*.status"

type bulkResponse struct {
	Errors bool       `json:"errors"`
	Items  []bulkItem `json:"items"`
}

// bulkItem is one item of a bulk response, keyed by its action; a struct
// rather than a map per item (a response of 1,000 refused items is read on
// every retry under pressure).
type bulkItem struct {
	Create *bulkItemResponse `json:"create"`
	Index  *bulkItemResponse `json:"index"`
}

type bulkItemResponse struct {
	Status int `json:"status"`
	Error  *struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// Write implements auditlogin.Output: the batch goes in bulk requests of at
// most BulkMaxEvents and BulkMaxBytes.
func (o *Output) Write(ctx context.Context, batch []*auditlogin.Event) error {
	var failed []auditlogin.ItemError
	var reqErr error  // the last request-level error
	answered := false // some request was answered item by item
	start := 0
	for start < len(batch) {
		end, size := start, 0
		for end < len(batch) && end-start < o.cfg.BulkMaxEvents {
			n := len(batch[end].Encoded) + 160
			if end > start && size+n > o.cfg.BulkMaxBytes {
				break
			}
			size += n
			end++
		}
		f, err := o.bulk(ctx, batch[start:end], start)
		if err != nil {
			reqErr = err
			for i := start; i < end; i++ {
				failed = append(failed, auditlogin.ItemError{Index: i, Err: err})
			}
		} else {
			answered = true
		}
		failed = append(failed, f...)
		start = end
	}
	if !answered && reqErr != nil {
		// No request was answered (the cluster is unreachable, or refuses
		// requests as a whole): the batch failed, an outage for the
		// pipeline, not items refused under pressure.
		return reqErr
	}
	if len(failed) > 0 {
		return &auditlogin.PartialError{Failed: failed}
	}
	return nil
}

// bulk sends one bulk request; item errors are returned with their index in
// the batch (offset + position); a returned error is the whole request's.
func (o *Output) bulk(ctx context.Context, evs []*auditlogin.Event, offset int) ([]auditlogin.ItemError, error) {
	body := newBulkBody()
	b := body.buf[:0]
	for _, ev := range evs {
		b = append(b, `{"create":{"_index":`...)
		b = auditlogin.AppendJSONString(b, o.IndexFor(ev))
		b = append(b, `,"_id":`...)
		b = auditlogin.AppendJSONString(b, ev.ID)
		b = append(b, "}}\n"...)
		b = append(b, ev.Encoded...)
		b = append(b, '\n')
	}
	body.buf = b
	body.r.Reset(b)
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http:///_bulk", nil)
	if err != nil {
		return nil, err
	}
	req.Body, req.ContentLength = body, int64(len(b))
	req.Header.Set("Content-Type", "application/json")
	q := url.Values{"filter_path": {bulkFilterPath}}
	if o.cfg.Pipeline != "" {
		q.Set("pipeline", o.cfg.Pipeline)
	}
	req.URL.RawQuery = q.Encode()
	res, err := o.tp.Perform(req)
	if err != nil {
		return nil, fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	resp := getBuffer()
	defer putBuffer(resp)
	if _, err := resp.ReadFrom(res.Body); err != nil {
		return nil, fmt.Errorf("reading bulk response: %w", err)
	}
	data := resp.Bytes()
	switch {
	case res.StatusCode == http.StatusRequestEntityTooLarge && len(evs) > 1:
		// Too large for the cluster's http.max_content_length: halve.
		half := len(evs) / 2
		a, errA := o.bulk(ctx, evs[:half], offset)
		if errA != nil {
			return nil, errA
		}
		b, errB := o.bulk(ctx, evs[half:], offset+half)
		if errB != nil {
			return nil, errB
		}
		return append(a, b...), nil
	case res.StatusCode == http.StatusRequestEntityTooLarge:
		return []auditlogin.ItemError{{Index: offset, Err: auditlogin.Permanent(errors.New("event larger than the cluster accepts (413)"))}}, nil
	case res.StatusCode >= 300:
		return nil, fmt.Errorf("bulk request refused: %s: %s", res.Status, truncate(data, 300))
	}
	var br bulkResponse
	if !bytes.Contains(data, []byte(`"errors":true`)) {
		return nil, nil // every item created
	}
	if err := json.Unmarshal(data, &br); err != nil {
		return nil, fmt.Errorf("bulk response is not JSON: %v", err)
	}
	if len(br.Items) != len(evs) {
		return nil, fmt.Errorf("bulk response has %d items for %d actions", len(br.Items), len(evs))
	}
	var failed []auditlogin.ItemError
	for i, item := range br.Items {
		var r bulkItemResponse
		switch {
		case item.Create != nil:
			r = *item.Create
		case item.Index != nil:
			r = *item.Index
		}
		switch {
		case r.Status >= 200 && r.Status < 300:
		case r.Status == http.StatusConflict:
			// Already there: the same id was created before (a replay).
		case r.Status == http.StatusTooManyRequests || r.Status >= 500:
			failed = append(failed, auditlogin.ItemError{Index: offset + i, Err: fmt.Errorf("item %d: %d %s", i, r.Status, itemReason(r))})
		default:
			failed = append(failed, auditlogin.ItemError{Index: offset + i, Err: auditlogin.Permanent(
				fmt.Errorf("elasticsearch refused the event (%d): %s", r.Status, itemReason(r)))})
		}
	}
	return failed, nil
}

// bulkBody is a bulk request's body, its buffer taken from a pool and put
// back when the HTTP transport closes it (after writing it, or on an
// error; it may do so after the request returns, so the buffer is not
// reused before): building a body of 512 events allocated and cleared a
// new one for every request.
type bulkBody struct {
	buf    []byte
	r      bytes.Reader
	closed atomic.Bool
}

// maxPooled: larger buffers (a bulk_max_bytes raised far above the
// default's requests) are left to the garbage collector.
const maxPooled = 4 << 20

var bodyPool sync.Pool // *[]byte

func newBulkBody() *bulkBody {
	b := &bulkBody{}
	if p, ok := bodyPool.Get().(*[]byte); ok {
		b.buf = (*p)[:0]
	}
	return b
}

func (b *bulkBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// Close puts the buffer back in the pool, once.
func (b *bulkBody) Close() error {
	if b.closed.Swap(true) || cap(b.buf) > maxPooled {
		return nil
	}
	buf := b.buf[:0]
	b.buf = nil
	bodyPool.Put(&buf)
	return nil
}

var respPool sync.Pool // *bytes.Buffer

func getBuffer() *bytes.Buffer {
	if b, ok := respPool.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooled {
		respPool.Put(b)
	}
}

func itemReason(r bulkItemResponse) string {
	if r.Error == nil {
		return "no reason given"
	}
	return r.Error.Type + ": " + r.Error.Reason
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Check implements auditlogin.Checker: reachability, version, auth, and
// whether the index template exists.
func (o *Output) Check(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	res, err := esapi.InfoRequest{}.Do(ctx, o.tp)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", strings.Join(o.cfg.Hosts, ", "), err)
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	switch {
	case res.StatusCode == 401 || res.StatusCode == 403:
		return nil, fmt.Errorf("authentication refused (%s): check username/password or api_key", res.Status())
	case res.StatusCode >= 300:
		return nil, fmt.Errorf("%s answered %s: %s", strings.Join(o.cfg.Hosts, ", "), res.Status(), truncate(data, 200))
	}
	var info struct {
		ClusterName string `json:"cluster_name"`
		Version     struct {
			Number string `json:"number"`
		} `json:"version"`
	}
	json.Unmarshal(data, &info)
	var report []string
	product := res.Header.Get("X-Elastic-Product")
	if product != "Elasticsearch" {
		report = append(report, fmt.Sprintf("the server does not say it is Elasticsearch (no X-Elastic-Product header): bulk ingestion may still work (%s)", truncate(data, 80)))
	}
	auth := "no authentication"
	switch {
	case o.cfg.APIKey != "":
		auth = "API key accepted"
	case o.cfg.Username != "":
		auth = "user " + o.cfg.Username + " accepted"
	}
	report = append(report, fmt.Sprintf("reached cluster %q, Elasticsearch %s (%s)", info.ClusterName, info.Version.Number, auth))
	tres, err := esapi.IndicesExistsIndexTemplateRequest{Name: o.cfg.TemplateName}.Do(ctx, o.tp)
	if err != nil {
		return report, fmt.Errorf("checking the index template: %w", err)
	}
	tres.Body.Close()
	if tres.StatusCode == 200 {
		report = append(report, fmt.Sprintf("index template %s is installed", o.cfg.TemplateName))
	} else {
		report = append(report, fmt.Sprintf("index template %s is not installed: run auditlogin setup (fields would get dynamic mappings: ip as text, not ip)", o.cfg.TemplateName))
	}
	return report, nil
}

// Transport gives setup and report the configured client.
func (o *Output) Transport() esapi.Transport { return o.tp }
