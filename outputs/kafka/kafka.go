// Package kafka is the Kafka output (github.com/segmentio/kafka-go): each
// event is one message, keyed by an event field (the id by default, so
// consumers can deduplicate replays), with id, format and the agent's host
// name as headers, on a fixed or templated topic.
//
// Write groups a batch by topic and partition itself (murmur2 of the key, as
// the Java client and kafka-go's Murmur2Balancer do) and sends every
// partition's messages at once, one produce request per leader broker
// holding a record batch per partition (encoded here, recordbatch.go; sent
// through kafka-go's Transport, or its Client's RawProduce for a single
// partition), so a request is as full as the batch allows and never waits
// for a batch timeout; the partition count is cached, not asked per message; the
// message bytes are the event's encoding. Several Writes run at
// once (Workers). Write returns when the broker has acknowledged every
// message with the configured acks; items of a failed partition are
// reported alone, so the pipeline resends only those. A request the broker
// refuses as too large is split in halves (and produce requests are capped
// from then on, with one log line); a message too large on its own is
// permanent, so it goes to the dead-letter file and the pipeline goes on.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	metadataapi "github.com/segmentio/kafka-go/protocol/metadata"
	produceapi "github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/clientcfg"
)

// Config configures the output. Zero values take the defaults noted.
type Config struct {
	Brokers []string
	Topic   string // fixed, or a template: mysql-logins-${myhost}
	Key     string // event field used as message key ("id")
	// Headers names the message headers, each an event field (its value
	// the field's) or "hostname" (the agent's host name); none by default,
	// as the event's JSON holds them.
	Headers         []string
	Compression     string        // none, gzip, snappy, lz4, zstd ("none")
	RequiredAcks    string        // all, one, none ("all")
	BatchSize       int           // messages per produce request (1000)
	BatchBytes      int64         // bytes per produce request (1 MiB)
	Workers         int           // Write calls in flight at once (4)
	MaxMessageBytes int           // larger messages are dead-lettered without a try (1000000)
	Timeout         time.Duration // dial, read and write timeout (10s)
	RetryInitial    time.Duration
	RetryMax        time.Duration
	ClientID        string
	AutoCreateTopic bool // let the broker create a missing topic (it must allow it too)
	TLS             *TLS
	SASL            *SASL
	AgentHostname   string // the "hostname" header's value
	Logger          *slog.Logger
}

// TLS configures encryption; a non-nil TLS with no fields uses the system CAs.
type TLS struct {
	CAFile             string
	CertFile, KeyFile  string
	ServerName         string
	InsecureSkipVerify bool
}

// SASL configures authentication. The password is Password, or read from
// the environment variable PasswordEnv, or from the file PasswordFile.
type SASL struct {
	Mechanism    string // plain, scram-sha-256, scram-sha-512
	Username     string
	Password     string
	PasswordEnv  string
	PasswordFile string
}

// Codecs are the compression names Config.Compression takes.
var Codecs = map[string]compress.Compression{
	"none": 0, "gzip": compress.Gzip, "snappy": compress.Snappy, "lz4": compress.Lz4, "zstd": compress.Zstd,
}

// Acks are the names Config.RequiredAcks takes.
var Acks = map[string]kafkago.RequiredAcks{"all": kafkago.RequireAll, "one": kafkago.RequireOne, "none": kafkago.RequireNone}

var templateVar = regexp.MustCompile(`\$\{([a-z_.A-Z0-9]+)\}`)

// TopicFields returns the event fields a topic template refers to, and an
// error for an unknown one.
func TopicFields(topic string) ([]string, error) {
	var out []string
	for _, m := range templateVar.FindAllStringSubmatch(topic, -1) {
		if !auditlogin.ValidField(m[1]) {
			return nil, fmt.Errorf("unknown field ${%s} (fields: %s, fields.NAME)", m[1], strings.Join(auditlogin.FieldNames, ", "))
		}
		out = append(out, m[1])
	}
	return out, nil
}

// HostnameHeader is the header name that holds the agent's host name.
const HostnameHeader = "hostname"

// validHeaders checks the names of Config.Headers, the error naming the
// first wrong one by its index.
func validHeaders(names []string) error {
	seen := map[string]bool{}
	for i, h := range names {
		switch {
		case h != HostnameHeader && !auditlogin.ValidField(h):
			return fmt.Errorf("headers[%d]: unknown field %q (expected hostname, %s or fields.NAME)", i, h, strings.Join(auditlogin.FieldNames, ", "))
		case seen[h]:
			return fmt.Errorf("headers[%d]: %q twice", i, h)
		}
		seen[h] = true
	}
	return nil
}

func (c *Config) defaults() {
	if c.Key == "" {
		c.Key = "id"
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.RequiredAcks == "" {
		c.RequiredAcks = "all"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1000000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.ClientID == "" {
		c.ClientID = "auditlogin"
	}
}

// Output is the Kafka output.
type Output struct {
	cfg       Config
	client    *kafkago.Client
	transport *kafkago.Transport
	addr      net.Addr
	templated bool
	codec     compress.Compression
	acks      kafkago.RequiredAcks

	// batchBytes is the produce request size in use: BatchBytes, lowered to
	// what the broker accepts once that is known.
	batchBytes atomic.Int64
	limitOnce  sync.Once
	capLogged  atomic.Bool // the cap was said (once)

	mu    sync.Mutex
	parts map[string]partitions // topic -> partition count, cached
}

type partitions struct {
	list    []int
	leaders []int32 // the leader broker of each partition
	fetched time.Time
}

// partitionsTTL is how long a topic's partition count is trusted; an error
// naming the partition forgets it at once.
const partitionsTTL = 30 * time.Second

// New checks cfg and returns an Output. It does not connect: the first
// Write (or Check) does.
func New(cfg Config) (*Output, error) {
	cfg.defaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("brokers: at least one host:port is required")
	}
	if cfg.Topic == "" {
		return nil, errors.New("topic: required")
	}
	if _, err := TopicFields(cfg.Topic); err != nil {
		return nil, fmt.Errorf("topic: %w", err)
	}
	if !auditlogin.ValidField(cfg.Key) {
		return nil, fmt.Errorf("key: unknown field %q", cfg.Key)
	}
	if err := validHeaders(cfg.Headers); err != nil {
		return nil, err
	}
	codec, ok := Codecs[cfg.Compression]
	if !ok {
		return nil, fmt.Errorf("compression: %q (expected none, gzip, snappy, lz4 or zstd)", cfg.Compression)
	}
	acks, ok := Acks[cfg.RequiredAcks]
	if !ok {
		return nil, fmt.Errorf("required_acks: %q (expected all, one or none)", cfg.RequiredAcks)
	}
	tr := &kafkago.Transport{ClientID: cfg.ClientID, DialTimeout: cfg.Timeout, IdleTimeout: time.Minute, MetadataTTL: 2 * time.Second}
	if cfg.TLS != nil {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tr.TLS = tc
	}
	if cfg.SASL != nil {
		m, err := mechanism(cfg.SASL)
		if err != nil {
			return nil, fmt.Errorf("sasl: %w", err)
		}
		tr.SASL = m
	}
	addr := kafkago.TCP(cfg.Brokers...)
	o := &Output{cfg: cfg, transport: tr, addr: addr, templated: templateVar.MatchString(cfg.Topic),
		codec: codec, acks: acks, parts: map[string]partitions{},
		client: &kafkago.Client{Addr: addr, Transport: tr, Timeout: cfg.Timeout}}
	o.batchBytes.Store(cfg.BatchBytes)
	return o, nil
}

func tlsConfig(c *TLS) (*tls.Config, error) {
	return clientcfg.TLS(c.CAFile, c.CertFile, c.KeyFile, c.ServerName, c.InsecureSkipVerify)
}

func mechanism(c *SASL) (sasl.Mechanism, error) {
	pass, err := clientcfg.Secret("password", c.Password, c.PasswordEnv, c.PasswordFile)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(c.Mechanism) {
	case "plain":
		return plain.Mechanism{Username: c.Username, Password: pass}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.Username, pass)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.Username, pass)
	}
	return nil, fmt.Errorf("mechanism: %q (expected plain, scram-sha-256 or scram-sha-512)", c.Mechanism)
}

// Name implements auditlogin.Output.
func (o *Output) Name() string { return "kafka" }

// RetryBackoff implements auditlogin.Retrier.
func (o *Output) RetryBackoff() (time.Duration, time.Duration) {
	return o.cfg.RetryInitial, o.cfg.RetryMax
}

var invalidTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]`)

// topic returns the event's topic: the template with each ${field} replaced
// by the field's value, characters Kafka does not allow turned into '_'.
func (o *Output) topic(ev *auditlogin.Event) string {
	if ev.Route.Topic != "" { // a route processor's
		return invalidTopicChars.ReplaceAllString(ev.Route.Topic, "_")
	}
	return templateVar.ReplaceAllStringFunc(o.cfg.Topic, func(m string) string {
		v, _ := ev.Field(m[2 : len(m)-1])
		if v == "" {
			v = "_"
		}
		return invalidTopicChars.ReplaceAllString(v, "_")
	})
}

// Workers implements auditlogin.Concurrent.
func (o *Output) Workers() int { return o.cfg.Workers }

// bytesOf views s as bytes without a copy; the bytes are only read.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// messageSize is an upper bound of what an event's message takes in a
// record batch: key, value, headers and the record's own framing.
func (o *Output) messageSize(ev *auditlogin.Event) int {
	key, _ := ev.Field(o.cfg.Key)
	n := len(key) + len(ev.Encoded) + 32
	for _, h := range o.cfg.Headers {
		n += len(h) + len(headerValue(ev, h, o.cfg.AgentHostname)) + 20
	}
	return n
}

var balancer = &kafkago.Murmur2Balancer{}

// partitionsOf returns the partitions of topic, from the cache or the
// cluster's metadata (which may create the topic, if allowed).
func (o *Output) partitionsOf(ctx context.Context, topic string) (partitions, error) {
	o.mu.Lock()
	p, ok := o.parts[topic]
	o.mu.Unlock()
	if ok && time.Since(p.fetched) < partitionsTTL {
		return p, nil
	}
	r, err := o.transport.RoundTrip(ctx, o.addr, &metadataapi.Request{TopicNames: []string{topic}, AllowAutoTopicCreation: o.cfg.AutoCreateTopic})
	if err != nil {
		return partitions{}, fmt.Errorf("fetching the partitions of topic %s: %w", topic, err)
	}
	for _, t := range r.(*metadataapi.Response).Topics {
		if t.Name != topic {
			continue
		}
		if t.ErrorCode != 0 {
			return partitions{}, fmt.Errorf("topic %s: %w", topic, kafkago.Error(t.ErrorCode))
		}
		if len(t.Partitions) == 0 {
			return partitions{}, fmt.Errorf("topic %s has no partitions yet", topic)
		}
		p := partitions{list: make([]int, len(t.Partitions)), leaders: make([]int32, len(t.Partitions)), fetched: time.Now()}
		for i := range p.list {
			p.list[i], p.leaders[i] = i, -1
		}
		for _, mp := range t.Partitions {
			if mp.PartitionIndex >= 0 && int(mp.PartitionIndex) < len(p.leaders) {
				p.leaders[mp.PartitionIndex] = mp.LeaderID
			}
		}
		o.mu.Lock()
		o.parts[topic] = p
		o.mu.Unlock()
		return p, nil
	}
	return partitions{}, fmt.Errorf("topic %s: %w", topic, kafkago.UnknownTopicOrPartition)
}

func (o *Output) forget(topic string) {
	o.mu.Lock()
	delete(o.parts, topic)
	o.mu.Unlock()
}

// request is the messages of one produce request: events of one partition.
type request struct {
	topic     string
	partition int
	leader    int32 // the partition's leader when the batch was grouped
	index     []int // into the batch
	bytes     int
}

// Write implements auditlogin.Output.
func (o *Output) Write(ctx context.Context, batch []*auditlogin.Event) error {
	if len(batch) == 0 {
		return nil
	}
	o.limitOnce.Do(func() { o.learnLimit(ctx) })
	var (
		mu     sync.Mutex
		failed []auditlogin.ItemError
	)
	fail := func(idx []int, err error) {
		mu.Lock()
		for _, i := range idx {
			failed = append(failed, auditlogin.ItemError{Index: i, Err: err})
		}
		mu.Unlock()
	}
	type tp struct {
		topic     string
		partition int
	}
	open := map[tp]*request{}
	var reqs []*request
	limit, maxCount := int(o.batchBytes.Load()), o.cfg.BatchSize
	// The topic's partitions and open requests are looked up once per topic
	// run, not per event (a lock, a map lookup and a clock read each).
	var (
		lastTopic string
		lastParts partitions
		lastErr   error
		lastOpen  []*request // by partition, for lastTopic
	)
	for i, ev := range batch {
		n := o.messageSize(ev)
		if n > o.cfg.MaxMessageBytes || n > limit {
			fail([]int{i}, auditlogin.Permanent(fmt.Errorf("message of %d bytes is larger than max_message_bytes (%d) or batch_bytes (%d)", n, o.cfg.MaxMessageBytes, limit)))
			continue
		}
		topic := o.cfg.Topic
		if o.templated || ev.Route.Topic != "" {
			topic = o.topic(ev)
		}
		if lastOpen == nil || topic != lastTopic {
			for p, r := range lastOpen { // what the last topic has open stays open
				if r != nil {
					open[tp{lastTopic, p}] = r
				}
			}
			lastTopic = topic
			lastParts, lastErr = o.partitionsOf(ctx, topic)
			lastOpen = make([]*request, len(lastParts.list))
			for p := range lastOpen {
				lastOpen[p] = open[tp{topic, p}]
			}
		}
		if lastErr != nil {
			fail([]int{i}, fmt.Errorf("producing to kafka: %w", lastErr))
			continue
		}
		key, _ := ev.Field(o.cfg.Key)
		k := tp{topic, balancer.Balance(kafkago.Message{Key: bytesOf(key)}, lastParts.list...)}
		r := lastOpen[k.partition]
		if r == nil || len(r.index) >= maxCount || r.bytes+n > limit {
			r = &request{topic: k.topic, partition: k.partition, leader: lastParts.leaders[k.partition]}
			lastOpen[k.partition] = r
			reqs = append(reqs, r)
		}
		r.index = append(r.index, i)
		r.bytes += n
	}
	if len(failed) == len(batch) && len(reqs) == 0 {
		if !errors.Is(failed[0].Err, auditlogin.ErrPermanent) {
			return failed[0].Err // the whole batch: nothing reached a broker
		}
	}
	sends := groupByLeader(reqs)
	var wg sync.WaitGroup
	for _, s := range sends[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.send(ctx, batch, s, fail)
		}()
	}
	if len(sends) > 0 {
		o.send(ctx, batch, sends[0], fail)
	}
	wg.Wait()
	if len(failed) > 0 {
		return &auditlogin.PartialError{Failed: failed}
	}
	return nil
}

// groupByLeader puts the requests for partitions with the same leader
// into one produce request each (a partition at most once in each): one
// round trip per broker for a batch, not one per partition (a third of the
// requests, reads and writes on both sides with three partitions).
func groupByLeader(reqs []*request) [][]*request {
	if len(reqs) <= 1 {
		return [][]*request{reqs}
	}
	type tp struct {
		topic     string
		partition int
	}
	var sends [][]*request
	var keys []map[tp]bool
	for _, r := range reqs {
		k := tp{r.topic, r.partition}
		i := 0
		for ; i < len(sends); i++ {
			if sends[i][0].leader == r.leader && r.leader >= 0 && !keys[i][k] {
				break
			}
		}
		if i == len(sends) {
			sends, keys = append(sends, nil), append(keys, map[tp]bool{})
		}
		sends[i], keys[i][k] = append(sends[i], r), true
	}
	return sends
}

func (o *Output) recordSet(batch []*auditlogin.Event, idx []int) protocol.RawRecordSet {
	rb := &recordBatch{batch: batch, idx: idx, key: o.cfg.Key, headers: o.cfg.Headers, hostname: o.cfg.AgentHostname, ts: time.Now().UnixMilli()}
	if o.codec != 0 {
		rb.codec = o.codec.Codec()
	}
	return protocol.RawRecordSet{Reader: rb}
}

// send sends reqs (partitions with one leader) in one produce request and
// settles each partition's events by its answer. When the client's view of
// the leaders differs from the one the requests were grouped by, each
// partition goes on its own.
func (o *Output) send(ctx context.Context, batch []*auditlogin.Event, reqs []*request, fail func([]int, error)) {
	if len(reqs) == 1 {
		o.produce(ctx, batch, reqs[0].topic, reqs[0].partition, reqs[0].index, fail)
		return
	}
	msg := &rawproduce.Request{Acks: int16(o.acks)}
	for _, r := range reqs {
		rp := rawproduce.RequestPartition{Partition: int32(r.partition), RecordSet: o.recordSet(batch, r.index)}
		if n := len(msg.Topics); n > 0 && msg.Topics[n-1].Topic == r.topic {
			msg.Topics[n-1].Partitions = append(msg.Topics[n-1].Partitions, rp)
		} else {
			msg.Topics = append(msg.Topics, rawproduce.RequestTopic{Topic: r.topic, Partitions: []rawproduce.RequestPartition{rp}})
		}
	}
	res, err := o.roundTrip(ctx, msg)
	var re *rawproduce.Error
	if errors.As(err, &re) { // no leader known, or another one: one request per partition
		var wg sync.WaitGroup
		for _, r := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o.produce(ctx, batch, r.topic, r.partition, r.index, fail)
			}()
		}
		wg.Wait()
		return
	}
	resp, _ := res.(*produceapi.Response)
	for _, r := range reqs {
		perr := err
		if perr == nil && o.acks != kafkago.RequireNone {
			perr = fmt.Errorf("the broker's answer has no partition %d of topic %s", r.partition, r.topic)
			if resp != nil {
				perr = partitionError(resp, r.topic, r.partition, perr)
			}
		}
		o.settle(ctx, batch, r.topic, r.partition, r.index, perr, fail)
	}
}

// partitionError is the error the broker gave for a partition in resp,
// nil for none, or missing when resp does not name it.
func partitionError(resp *produceapi.Response, topic string, partition int, missing error) error {
	for _, t := range resp.Topics {
		if t.Topic != topic {
			continue
		}
		for _, p := range t.Partitions {
			if int(p.Partition) != partition {
				continue
			}
			if p.ErrorCode == 0 {
				return nil
			}
			if p.ErrorMessage != "" {
				return fmt.Errorf("%w: %s", kafkago.Error(p.ErrorCode), p.ErrorMessage)
			}
			return kafkago.Error(p.ErrorCode)
		}
	}
	return missing
}

// roundTrip sends msg through the client's transport with the client's
// timeout, as kafka-go's Client does for one partition (the broker is told
// half of it, to answer in time).
func (o *Output) roundTrip(ctx context.Context, msg *rawproduce.Request) (protocol.Message, error) {
	timeout := o.cfg.Timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	msg.Timeout = int32(max(timeout/2, time.Millisecond) / time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	return o.transport.RoundTrip(ctx, o.addr, msg)
}

// produce sends the events batch[idx] to one partition in one request, and
// reports those that failed. A request refused as too large is split in two.
func (o *Output) produce(ctx context.Context, batch []*auditlogin.Event, topic string, partition int, idx []int, fail func([]int, error)) {
	res, err := o.client.RawProduce(ctx, &kafkago.RawProduceRequest{Topic: topic, Partition: partition,
		RequiredAcks: o.acks, RawRecords: o.recordSet(batch, idx)})
	if err == nil && res != nil {
		err = res.Error
	}
	o.settle(ctx, batch, topic, partition, idx, err, fail)
}

// settle reports the outcome of producing batch[idx] to a partition: nothing
// on success; a request refused as too large is split in two and sent
// again; other errors fail the events (retried by the pipeline).
func (o *Output) settle(ctx context.Context, batch []*auditlogin.Event, topic string, partition int, idx []int, err error, fail func([]int, error)) {
	switch {
	case err == nil:
		return
	case isTooLarge(err) && len(idx) > 1:
		size := 0
		for _, i := range idx {
			size += o.messageSize(batch[i])
		}
		if cur := o.batchBytes.Load(); int64(size/2) < cur && o.batchBytes.CompareAndSwap(cur, int64(size/2)) && !o.capLogged.Swap(true) {
			o.cfg.Logger.Warn("the broker refused a produce request as too large: outputs.kafka.batch_bytes is above its message.max.bytes; capping requests",
				"output", "kafka", "topic", topic, "request_bytes", size, "batch_bytes_now", size/2)
		}
		half := len(idx) / 2
		o.produce(ctx, batch, topic, partition, idx[:half], fail)
		o.produce(ctx, batch, topic, partition, idx[half:], fail)
	case isTooLarge(err):
		fail(idx, auditlogin.Permanent(fmt.Errorf("broker refused the message as too large (message.max.bytes): %w", err)))
	default:
		var ke kafkago.Error
		if errors.As(err, &ke) && (ke == kafkago.NotLeaderForPartition || ke == kafkago.UnknownTopicOrPartition || ke == kafkago.LeaderNotAvailable) {
			o.forget(topic)
		}
		fail(idx, fmt.Errorf("producing to kafka (topic %s, partition %d): %w", topic, partition, err))
	}
}

// learnLimit asks the cluster what a produce request may hold for the topic
// (max.message.bytes) and caps batch_bytes to it, saying so once. It is
// best effort: an unreachable cluster leaves batch_bytes as configured, and
// a refusal later splits the request anyway.
func (o *Output) learnLimit(ctx context.Context) {
	if o.templated {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	limit, err := o.brokerLimit(ctx, o.cfg.Topic)
	if err != nil || limit <= 0 {
		return
	}
	if safe := int64(limit) - requestOverhead; o.cfg.BatchBytes > safe {
		o.batchBytes.Store(safe)
		o.capLogged.Store(true)
		o.cfg.Logger.Warn("outputs.kafka.batch_bytes is above what the broker accepts for the topic; produce requests are capped to it",
			"output", "kafka", "batch_bytes", o.cfg.BatchBytes, "max_message_bytes_of_topic", limit, "topic", o.cfg.Topic, "capped_to", safe)
	}
}

// requestOverhead is kept free below max.message.bytes for the record
// batch's own header (61 bytes). None is needed: messageSize counts 96
// bytes of framing per message, well above a record's real framing, which
// leaves room for the header in any request of two or more messages.
const requestOverhead = 0

// brokerLimit returns what one produce request to topic may hold: the
// topic's max.message.bytes when the topic overrides it, else the broker's
// message.max.bytes (which a topic without an override follows).
func (o *Output) brokerLimit(ctx context.Context, topic string) (int, error) {
	topicVal, source, err := o.describe(ctx, kafkago.ResourceTypeTopic, topic, "max.message.bytes")
	if err != nil {
		return 0, err
	}
	const dynamicTopicConfig = 1 // ConfigSource: set on the topic itself
	if source == dynamicTopicConfig {
		return topicVal, nil
	}
	md, err := o.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err == nil && len(md.Brokers) > 0 {
		if v, _, err := o.describe(ctx, kafkago.ResourceTypeBroker, strconv.Itoa(md.Brokers[0].ID), "message.max.bytes"); err == nil && v > 0 {
			return v, nil
		}
	}
	return topicVal, nil
}

// describe reads one numeric config of a resource, with its source.
func (o *Output) describe(ctx context.Context, typ kafkago.ResourceType, name, key string) (int, int8, error) {
	res, err := o.client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: typ, ResourceName: name, ConfigNames: []string{key}}}})
	if err != nil {
		return 0, 0, err
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return 0, 0, r.Error
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == key {
				v, err := strconv.Atoi(e.ConfigValue)
				return v, e.ConfigSource, err
			}
		}
	}
	return 0, 0, fmt.Errorf("the broker did not say %s", key)
}

// Close implements auditlogin.Output.
func (o *Output) Close() error {
	o.transport.CloseIdleConnections()
	return nil
}

// Check implements auditlogin.Checker: it connects, fetches metadata, and
// says whether the topic exists or will be created.
func (o *Output) Check(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	client := &kafkago.Client{Addr: o.addr, Transport: o.transport, Timeout: o.cfg.Timeout}
	topic := o.cfg.Topic
	if o.templated {
		topic = ""
	}
	req := &kafkago.MetadataRequest{}
	if topic != "" {
		req.Topics = []string{topic}
	}
	md, err := client.Metadata(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the brokers %s or authenticate: %w", strings.Join(o.cfg.Brokers, ", "), err)
	}
	var report []string
	sec := "plaintext"
	if o.cfg.TLS != nil {
		sec = "TLS"
	}
	if o.cfg.SASL != nil {
		sec += ", SASL " + o.cfg.SASL.Mechanism + " as " + o.cfg.SASL.Username
	}
	report = append(report, fmt.Sprintf("connected to kafka (%s): %d broker(s), cluster %s", sec, len(md.Brokers), md.ClusterID))
	headers := "none (outputs.kafka.headers adds them)"
	if len(o.cfg.Headers) > 0 {
		headers = strings.Join(o.cfg.Headers, ", ")
	}
	report = append(report, fmt.Sprintf("messages keyed by %s; headers: %s", o.cfg.Key, headers))
	if o.templated {
		report = append(report, fmt.Sprintf("topic is a template (%s): topics are created on first use if the broker allows it", o.cfg.Topic))
		return report, nil
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error == nil {
			report = append(report, fmt.Sprintf("topic %s exists with %d partition(s)", topic, len(t.Partitions)))
			return o.checkLimit(ctx, topic, report)
		}
		if !errors.Is(t.Error, kafkago.UnknownTopicOrPartition) {
			return report, fmt.Errorf("topic %s: %w", topic, t.Error)
		}
	}
	if !o.cfg.AutoCreateTopic {
		return report, fmt.Errorf("topic %s does not exist, and auto_create_topic is off: create it, or turn auto_create_topic on", topic)
	}
	// Ask for it as the writer will, allowing creation: that tells for sure
	// whether the broker creates topics (and creates this one now).
	if _, err := o.transport.RoundTrip(ctx, o.addr, &metadataapi.Request{TopicNames: []string{topic}, AllowAutoTopicCreation: true}); err != nil {
		return report, fmt.Errorf("asking the broker to create topic %s: %w", topic, err)
	}
	for i := 0; i < 20; i++ {
		md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
		if err == nil {
			for _, t := range md.Topics {
				if t.Name == topic && t.Error == nil {
					report = append(report, fmt.Sprintf("topic %s did not exist: the broker created it on request (auto-creation works), %d partition(s)", topic, len(t.Partitions)))
					return o.checkLimit(ctx, topic, report)
				}
			}
		}
		select {
		case <-ctx.Done():
			i = 20
		case <-time.After(100 * time.Millisecond):
		}
	}
	return report, fmt.Errorf("topic %s does not exist and the broker does not create topics (auto.create.topics.enable=false): create it", topic)
}

// checkLimit compares batch_bytes with what the broker accepts for topic.
func (o *Output) checkLimit(ctx context.Context, topic string, report []string) ([]string, error) {
	limit, err := o.brokerLimit(ctx, topic)
	if err != nil {
		return append(report, fmt.Sprintf("could not ask the broker for max.message.bytes of topic %s (%v): batch_bytes is not checked", topic, err)), nil
	}
	if safe := int64(limit) - requestOverhead; o.cfg.BatchBytes > safe {
		return report, fmt.Errorf("outputs.kafka.batch_bytes: %d is above what the broker accepts for topic %s (max.message.bytes %d): set it to at most %d (run would cap it and say so)",
			o.cfg.BatchBytes, topic, limit, safe)
	}
	return append(report, fmt.Sprintf("batch_bytes %d fits the broker's max.message.bytes %d for topic %s", o.cfg.BatchBytes, limit, topic)), nil
}

// isTooLarge reports a MESSAGE_TOO_LARGE refusal, also inside WriteErrors.
func isTooLarge(err error) bool {
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && isTooLarge(e) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafkago.MessageSizeTooLarge)
}
