// Package kafka is the Kafka output (github.com/segmentio/kafka-go): each
// event is one message, keyed by an event field (the id by default, so
// consumers can deduplicate replays), with id, format and the agent's host
// name as headers, on a fixed or templated topic. Write returns only when the
// broker has acknowledged every message with the configured acks; messages
// the broker refuses as too large are reported as permanent, so they go to
// the dead-letter file and the pipeline goes on.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	metadataapi "github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/internal/clientcfg"
)

// Config configures the output. Zero values take the defaults noted.
type Config struct {
	Brokers         []string
	Topic           string // fixed, or a template: mysql-logins-${myhost}
	Key             string // event field used as message key ("id")
	Compression     string // none, gzip, snappy, lz4, zstd ("none")
	RequiredAcks    string // all, one, none ("all")
	BatchSize       int    // messages per produce request (1000)
	BatchBytes      int64  // bytes per produce request (1 MiB)
	BatchTimeout    time.Duration
	MaxMessageBytes int           // larger messages are dead-lettered without a try (1000000)
	Timeout         time.Duration // dial, read and write timeout (10s)
	RetryInitial    time.Duration
	RetryMax        time.Duration
	ClientID        string
	AutoCreateTopic bool // let the broker create a missing topic (it must allow it too)
	TLS             *TLS
	SASL            *SASL
	AgentHostname   string // the "hostname" header
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
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = time.Millisecond
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
	w         *kafkago.Writer
	transport *kafkago.Transport
	addr      net.Addr
	templated bool
}

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
	o := &Output{cfg: cfg, transport: tr, addr: addr, templated: templateVar.MatchString(cfg.Topic)}
	o.w = &kafkago.Writer{
		Addr:                   addr,
		Balancer:               &kafkago.Murmur2Balancer{}, // the Java client's default: same key, same partition
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		ReadTimeout:            cfg.Timeout,
		WriteTimeout:           cfg.Timeout,
		RequiredAcks:           acks,
		Compression:            codec,
		Transport:              tr,
		AllowAutoTopicCreation: cfg.AutoCreateTopic,
	}
	if !o.templated {
		o.w.Topic = cfg.Topic
	}
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
	return templateVar.ReplaceAllStringFunc(o.cfg.Topic, func(m string) string {
		v, _ := ev.Field(m[2 : len(m)-1])
		if v == "" {
			v = "_"
		}
		return invalidTopicChars.ReplaceAllString(v, "_")
	})
}

func (o *Output) message(ev *auditlogin.Event) kafkago.Message {
	key, _ := ev.Field(o.cfg.Key)
	m := kafkago.Message{
		Key:   []byte(key),
		Value: ev.Encoded,
		Headers: []kafkago.Header{
			{Key: "id", Value: []byte(ev.ID)},
			{Key: "format", Value: []byte(ev.Format)},
			{Key: "hostname", Value: []byte(o.cfg.AgentHostname)},
		},
	}
	if o.templated {
		m.Topic = o.topic(ev)
	}
	return m
}

// messageSize is an upper bound of what a message takes in a record batch.
func messageSize(m *kafkago.Message) int {
	n := len(m.Key) + len(m.Value) + 64
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// Write implements auditlogin.Output.
func (o *Output) Write(ctx context.Context, batch []*auditlogin.Event) error {
	if len(batch) == 0 {
		return nil
	}
	var failed []auditlogin.ItemError
	msgs := make([]kafkago.Message, 0, len(batch))
	index := make([]int, 0, len(batch)) // msgs[i] is batch[index[i]]
	for i, ev := range batch {
		m := o.message(ev)
		if n := messageSize(&m); n > o.cfg.MaxMessageBytes || int64(n) > o.cfg.BatchBytes {
			failed = append(failed, auditlogin.ItemError{Index: i, Err: auditlogin.Permanent(
				fmt.Errorf("message of %d bytes is larger than max_message_bytes/batch_bytes", n))})
			continue
		}
		msgs = append(msgs, m)
		index = append(index, i)
	}
	err := o.w.WriteMessages(ctx, msgs...)
	var werr kafkago.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &werr):
		var tooLarge []int
		for i, e := range werr {
			if e == nil {
				continue
			}
			if isTooLarge(e) {
				tooLarge = append(tooLarge, i)
				continue
			}
			failed = append(failed, auditlogin.ItemError{Index: index[i], Err: fmt.Errorf("producing to kafka: %w", e)})
		}
		// The broker refused a whole record batch as too large: send its
		// messages one by one, so only the ones that are too large on their
		// own are refused (and dead-lettered).
		for _, i := range tooLarge {
			if e := o.w.WriteMessages(ctx, msgs[i]); e != nil {
				if isTooLarge(e) {
					e = auditlogin.Permanent(fmt.Errorf("broker refused the message as too large (message.max.bytes): %w", e))
				}
				failed = append(failed, auditlogin.ItemError{Index: index[i], Err: e})
			}
		}
	default:
		if len(failed) == 0 {
			return fmt.Errorf("producing to kafka: %w", err)
		}
		for _, i := range index {
			failed = append(failed, auditlogin.ItemError{Index: i, Err: fmt.Errorf("producing to kafka: %w", err)})
		}
	}
	if len(failed) > 0 {
		return &auditlogin.PartialError{Failed: failed}
	}
	return nil
}

// Close implements auditlogin.Output.
func (o *Output) Close() error {
	err := o.w.Close()
	o.transport.CloseIdleConnections()
	return err
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
			return report, nil
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
					return report, nil
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
