package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

const topic = "mysql-logins"

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consume reads records from the start of the topics matching re until want
// have arrived (or 20s pass), with franz-go: another client than the one
// that produced them.
func consume(t *testing.T, addrs []string, re string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeRegex(), kgo.ConsumeTopics(re),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	// and nothing more
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	cl.PollFetches(ctx2).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	return recs
}

func newOutput(t *testing.T, cfg Config) *Output {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func offsetOf(t *testing.T, value []byte) float64 {
	var ev struct {
		Log struct {
			Offset float64 `json:"offset"`
		} `json:"log"`
	}
	if err := json.Unmarshal(value, &ev); err != nil {
		t.Fatalf("value is not an event: %s", value)
	}
	return ev.Log.Offset
}

func TestConformance(t *testing.T) {
	var c *kfake.Cluster
	outputtest.Run(t, outputtest.Harness{
		New: func(t *testing.T) auditlogin.Output {
			c = newCluster(t)
			return newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, AgentHostname: "agent-1"})
		},
		ReadBack: func(t *testing.T, want int) [][]byte {
			recs := consume(t, c.ListenAddrs(), topic, want)
			// Kafka orders messages per partition only: put them back in
			// the order they were read (log.offset grows with it).
			sort.SliceStable(recs, func(i, j int) bool { return offsetOf(t, recs[i].Value) < offsetOf(t, recs[j].Value) })
			var out [][]byte
			for _, r := range recs {
				out = append(out, r.Value)
			}
			return out
		},
	})
}

func TestKeysHeadersPartitionsAndTemplatedTopics(t *testing.T) {
	c := newCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: "mysql-logins-${myhost}", AutoCreateTopic: true,
		Headers: []string{"id", "format", "hostname"}, AgentHostname: "agent-1"})
	defer o.Close()
	evs := outputtest.Events(300, "k")
	for i, ev := range evs {
		ev.MyHost = []string{"db-1", "db/2"}[i%2] // '/' is not allowed in a topic name
	}
	if err := o.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c.ListenAddrs(), "mysql-logins-.*", 300)
	if len(recs) != 300 {
		t.Fatalf("consumed %d, want 300", len(recs))
	}
	byID := map[string]*auditlogin.Event{}
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	partitions := map[int32]bool{}
	for _, r := range recs {
		ev := byID[string(r.Key)]
		if ev == nil {
			t.Fatalf("key %q is not an event id", r.Key)
		}
		want := map[string]string{"id": ev.ID, "format": "audit_login", "hostname": "agent-1"}
		for _, h := range r.Headers {
			if want[h.Key] != string(h.Value) {
				t.Errorf("header %s=%s, want %s", h.Key, h.Value, want[h.Key])
			}
			delete(want, h.Key)
		}
		if len(want) > 0 {
			t.Errorf("missing headers %v", want)
		}
		wantTopic := map[string]string{"db-1": "mysql-logins-db-1", "db/2": "mysql-logins-db_2"}[ev.MyHost]
		if r.Topic != wantTopic {
			t.Errorf("event of %s went to topic %s, want %s", ev.MyHost, r.Topic, wantTopic)
		}
		if string(r.Value) != string(ev.Encoded) {
			t.Errorf("value differs")
		}
		partitions[r.Partition] = true
	}
	if len(partitions) < 2 {
		t.Errorf("all messages in one partition: keys are not spread")
	}
}

func TestKeyField(t *testing.T) {
	c := newCluster(t)
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, Key: "user"})
	defer o.Close()
	evs := outputtest.Events(10, "keyed")
	if err := o.Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c.ListenAddrs(), topic, 10)
	parts := map[int32]bool{}
	for _, r := range recs {
		if string(r.Key) != "keyeduser" {
			t.Fatalf("key %q, want the user", r.Key)
		}
		parts[r.Partition] = true
	}
	if len(parts) != 1 {
		t.Fatalf("one key spread over %d partitions: order per key is lost", len(parts))
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no brokers":     {Topic: "t"},
		"no topic":       {Brokers: []string{"x:1"}},
		"bad template":   {Brokers: []string{"x:1"}, Topic: "a-${nope}"},
		"bad key":        {Brokers: []string{"x:1"}, Topic: "t", Key: "nope"},
		"bad codec":      {Brokers: []string{"x:1"}, Topic: "t", Compression: "brotli"},
		"bad acks":       {Brokers: []string{"x:1"}, Topic: "t", RequiredAcks: "two"},
		"bad mechanism":  {Brokers: []string{"x:1"}, Topic: "t", SASL: &SASL{Mechanism: "gssapi"}},
		"missing env":    {Brokers: []string{"x:1"}, Topic: "t", SASL: &SASL{Mechanism: "plain", PasswordEnv: "AUDITLOGIN_TEST_UNSET_VAR"}},
		"two passwords":  {Brokers: []string{"x:1"}, Topic: "t", SASL: &SASL{Mechanism: "plain", Password: "a", PasswordFile: "/x"}},
		"missing CA":     {Brokers: []string{"x:1"}, Topic: "t", TLS: &TLS{CAFile: "/nonexistent/ca.pem"}},
		"cert, no key":   {Brokers: []string{"x:1"}, Topic: "t", TLS: &TLS{CertFile: "/nonexistent/c.pem"}},
		"password leaks": {Brokers: []string{"x:1"}, Topic: "t", SASL: &SASL{Mechanism: "nope", Password: "hunter2"}},
	} {
		_, err := New(cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
}

// A message larger than the broker accepts is refused permanently (so it is
// dead-lettered), and only that one: the others of its batch are delivered.
func TestMessageTooLarge(t *testing.T) {
	c := newCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4000"}))
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, Key: "myhost"}) // one partition
	defer o.Close()
	evs := outputtest.Events(20, "big")
	evs[7].Encoded = append(evs[7].Encoded[:len(evs[7].Encoded)-1], []byte(`,"pad":"`+strings.Repeat("x", 5000)+`"}`)...)
	err := o.Write(context.Background(), evs)
	var pe *auditlogin.PartialError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Index != 7 || !errors.Is(pe.Failed[0].Err, auditlogin.ErrPermanent) {
		t.Fatalf("want only item 7 refused permanently, got %v", err)
	}
	if recs := consume(t, c.ListenAddrs(), topic, 19); len(recs) != 19 {
		t.Fatalf("%d delivered, want the other 19", len(recs))
	}
	// Larger than the client's own limit: refused before sending.
	o2 := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, MaxMessageBytes: 1000})
	defer o2.Close()
	err = o2.Write(context.Background(), evs[7:8])
	if !errors.As(err, &pe) || !errors.Is(pe.Failed[0].Err, auditlogin.ErrPermanent) {
		t.Fatalf("want a permanent error, got %v", err)
	}
}

func TestBrokerDownIsTransient(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens here
	o := newOutput(t, Config{Brokers: []string{addr}, Topic: topic, Timeout: time.Second})
	defer o.Close()
	err := o.Write(context.Background(), outputtest.Events(3, "down"))
	if err == nil || errors.Is(err, auditlogin.ErrPermanent) {
		t.Fatalf("want a transient error, got %v", err)
	}
	if _, err := o.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("check: %v", err)
	}
}

func TestCheck(t *testing.T) {
	c := newCluster(t, kfake.AllowAutoTopicCreation())
	ctx := context.Background()
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic})
	rep, err := o.Check(ctx)
	if err != nil || !strings.Contains(strings.Join(rep, "\n"), "topic mysql-logins exists with 3 partition(s)") {
		t.Fatalf("existing topic: %v %v", rep, err)
	}
	if !strings.Contains(strings.Join(rep, "\n"), "messages keyed by id; headers: none (outputs.kafka.headers adds them)") {
		t.Fatalf("key and headers: %v", rep)
	}
	o = newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: "not-yet", AutoCreateTopic: true, Key: "myhost", Headers: []string{"format", "hostname"}})
	rep, err = o.Check(ctx)
	if err != nil || !strings.Contains(strings.Join(rep, "\n"), "the broker created it on request") {
		t.Fatalf("auto-created topic: %v %v", rep, err)
	}
	if !strings.Contains(strings.Join(rep, "\n"), "messages keyed by myhost; headers: format, hostname") {
		t.Fatalf("key and headers: %v", rep)
	}
	o = newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: "still-missing"})
	if _, err = o.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing topic without auto-create: %v", err)
	}
	c2 := newCluster(t)
	o = newOutput(t, Config{Brokers: c2.ListenAddrs(), Topic: "not-yet", AutoCreateTopic: true})
	if _, err = o.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not create topics") {
		t.Fatalf("broker without auto-create: %v", err)
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1, and writes the
// CA's PEM to a file.
func testCA(t *testing.T) (serverCfg *tls.Config, caFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "auditlogin test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}}, caFile
}

func TestTLSAndSASL(t *testing.T) {
	serverTLS, caFile := testCA(t)
	c := newCluster(t, kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "shipper", "s3cret-256"),
		kfake.Superuser("SCRAM-SHA-512", "shipper512", "s3cret-512"),
		kfake.Superuser("PLAIN", "plainuser", "s3cret-plain"))
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	consumerOpts := []kgo.Opt{kgo.DialTLSConfig(&tls.Config{RootCAs: pool}),
		kgo.SASL(scram.Auth{User: "shipper", Pass: "s3cret-256"}.AsSha256Mechanism())}
	passFile := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(passFile, []byte("s3cret-512\n"), 0o600)
	t.Setenv("AUDITLOGIN_TEST_KAFKA_PASS", "s3cret-256")
	ctx := context.Background()
	total := 0
	for name, s := range map[string]*SASL{
		"scram-sha-256 from env":  {Mechanism: "scram-sha-256", Username: "shipper", PasswordEnv: "AUDITLOGIN_TEST_KAFKA_PASS"},
		"scram-sha-512 from file": {Mechanism: "scram-sha-512", Username: "shipper512", PasswordFile: passFile},
		"plain":                   {Mechanism: "plain", Username: "plainuser", Password: "s3cret-plain"},
	} {
		o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, TLS: &TLS{CAFile: caFile}, SASL: s})
		if rep, err := o.Check(ctx); err != nil || !strings.Contains(rep[0], "TLS, SASL") {
			t.Fatalf("%s: check: %v %v", name, rep, err)
		}
		if err := o.Write(ctx, outputtest.Events(5, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		o.Close()
		total += 5
	}
	if recs := consume(t, c.ListenAddrs(), topic, total, consumerOpts...); len(recs) != total {
		t.Fatalf("consumed %d, want %d", len(recs), total)
	}
	// Wrong password, no CA: check says so in plain words.
	bad := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, TLS: &TLS{CAFile: caFile},
		SASL: &SASL{Mechanism: "scram-sha-256", Username: "shipper", Password: "wrong"}, Timeout: 3 * time.Second})
	// Refused for its credentials: the broker saw the SCRAM exchange and
	// the client failed after it (kafka-go reports the broker hanging up),
	// the password never echoed.
	var auths atomic.Int64
	c.ControlKey(36, func(kmsg.Request) (kmsg.Response, error, bool) { // 36: SASLAuthenticate
		auths.Add(1)
		return nil, nil, false
	})
	c.KeepControl()
	if _, err := bad.Check(ctx); err == nil || !strings.Contains(err.Error(), "or authenticate") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	if auths.Load() == 0 {
		t.Fatal("wrong password: the check failed before any SASL exchange, so it did not test authentication")
	}
	noCA := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, TLS: &TLS{},
		SASL: &SASL{Mechanism: "scram-sha-256", Username: "shipper", Password: "s3cret-256"}, Timeout: 3 * time.Second})
	if _, err := noCA.Check(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown CA: %v", err)
	}
}

// requireTool skips when a third-party tool is absent, unless
// AUDITLOGIN_E2E=require (CI), where its absence is a failure.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatalf("%s is required (AUDITLOGIN_E2E=require) but not installed: apt-get install %s", name, name)
		}
		t.Skipf("%s not installed: skipping the cross-check with a third-party client (apt-get install %s)", name, name)
	}
	return p
}

// A real third-party client (librdkafka's kcat) reads back what was produced
// with each codec: the same count, ids, values and headers (none by default,
// as with the codec none; the others with three).
func TestKcatReadsEveryCodec(t *testing.T) {
	kcat := requireTool(t, "kcat")
	c := newCluster(t, kfake.AllowAutoTopicCreation())
	evs := outputtest.Events(500, "kcat")
	for codec := range Codecs {
		t.Run(codec, func(t *testing.T) {
			tp := "codec-" + codec
			var headers []string
			if codec != "none" {
				headers = []string{"id", "format", "hostname"}
			}
			o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: tp, Compression: codec, AutoCreateTopic: true, Headers: headers, AgentHostname: "agent-1"})
			for i := 0; i < len(evs); i += 100 {
				if err := o.Write(context.Background(), evs[i:i+100]); err != nil {
					t.Fatal(err)
				}
			}
			o.Close()
			out, err := exec.Command(kcat, "-C", "-b", c.ListenAddrs()[0], "-t", tp, "-o", "beginning", "-e", "-q",
				"-X", "check.crcs=true", "-f", "%k\t%s\t%h\n").CombinedOutput()
			if err != nil {
				t.Fatalf("kcat: %v\n%s", err, out)
			}
			got, hdrs := map[string]string{}, map[string]string{}
			for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") { // (a message without headers ends in a tab)
				f := strings.SplitN(line, "\t", 3)
				if len(f) != 3 {
					t.Fatalf("kcat printed %q", line)
				}
				got[f[0]], hdrs[f[0]] = f[1], f[2]
			}
			if len(got) != len(evs) {
				t.Fatalf("kcat read %d distinct keys, want %d", len(got), len(evs))
			}
			for _, ev := range evs {
				if got[ev.ID] != string(ev.Encoded) {
					t.Fatalf("kcat: message %s is %q, want %q", ev.ID, got[ev.ID], ev.Encoded)
				}
				want := ""
				if len(headers) > 0 {
					want = "id=" + ev.ID + ",format=" + ev.Format + ",hostname=agent-1"
				}
				if got := hdrs[ev.ID]; got != want {
					t.Fatalf("kcat: message %s has headers %q, want %q", ev.ID, got, want)
				}
			}
		})
	}
}

// batch_bytes above what the broker takes: check fails naming the field and
// the broker's limit; Write caps its requests (said once in the log) and
// delivers everything, never stalling and never falling back to one message
// a request.
func TestBatchBytesAboveTheBrokerLimit(t *testing.T) {
	c := newCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "200000"}))
	log, logs := captureLog()
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic, BatchBytes: 16 << 20, BatchSize: 100000, Key: "myhost", Logger: log})
	defer o.Close()
	_, err := o.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "outputs.kafka.batch_bytes") || !strings.Contains(err.Error(), "200000") {
		t.Fatalf("check with batch_bytes 16MiB and a broker taking 200000: %v", err)
	}
	// Count the produce requests the broker sees.
	var produces atomic.Int64
	c.ControlKey(0, func(kmsg.Request) (kmsg.Response, error, bool) { // 0: Produce
		produces.Add(1)
		return nil, nil, false
	})
	evs := outputtest.Events(5000, "cap") // ~2 MB on one partition (key myhost)
	if err := o.Write(context.Background(), evs); err != nil {
		t.Fatalf("write: %v", err)
	}
	if recs := consume(t, c.ListenAddrs(), topic, len(evs)); len(recs) != len(evs) {
		t.Fatalf("%d delivered, want %d", len(recs), len(evs))
	}
	if n := strings.Count(logs(), "level=WARN"); n != 1 || !strings.Contains(logs(), "capped") {
		t.Errorf("the cap was logged %d times, want once:\n%s", n, logs())
	}
	if n := produces.Load(); n > 40 || n < 5 {
		t.Errorf("%d produce requests for ~2 MB under a 200000-byte limit: want requests near the limit, not one per message", n)
	}
}

// Where the limit cannot be asked in advance (a templated topic), a request
// the broker refuses as too large is split, and requests are capped from
// then on, said once.
func TestTooLargeRequestIsSplit(t *testing.T) {
	c := newCluster(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "200000"}), kfake.AllowAutoTopicCreation())
	log, logs := captureLog()
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: "logins-${myhost}", AutoCreateTopic: true, BatchBytes: 16 << 20, BatchSize: 100000, Key: "myhost", Logger: log})
	defer o.Close()
	evs := outputtest.Events(5000, "split")
	var err error
	for try := 0; try < 50; try++ { // the auto-created topic may need a moment to have a leader
		if err = o.Write(context.Background(), evs); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if recs := consume(t, c.ListenAddrs(), "logins-.*", len(evs)); len(recs) < len(evs) {
		t.Fatalf("%d delivered, want %d", len(recs), len(evs))
	}
	if n := strings.Count(logs(), "refused a produce request as too large"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs())
	}
}

// captureLog returns a logger and what it has logged so far (text format).
func captureLog() (*slog.Logger, func() string) {
	var mu sync.Mutex
	var buf strings.Builder
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	return slog.New(slog.NewTextHandler(w, nil)), func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A batch spread over the partitions of one broker goes in one produce
// request (a partition each); with several brokers, one request per leader.
func TestOneProduceRequestPerLeader(t *testing.T) {
	for _, brokers := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d brokers", brokers), func(t *testing.T) {
			c := newCluster(t, kfake.NumBrokers(brokers))
			for p := range int32(3) { // partition p led by broker p % brokers
				if err := c.MoveTopicPartition(topic, p, p%int32(brokers)); err != nil {
					t.Fatal(err)
				}
			}
			var requests, partitions atomic.Int64
			c.ControlKey(0, func(req kmsg.Request) (kmsg.Response, error, bool) { // 0: Produce
				c.KeepControl()
				requests.Add(1)
				for _, t := range req.(*kmsg.ProduceRequest).Topics {
					partitions.Add(int64(len(t.Partitions)))
				}
				return nil, nil, false
			})
			o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic})
			defer o.Close()
			evs := outputtest.Events(300, "one")
			if err := o.Write(context.Background(), evs); err != nil {
				t.Fatal(err)
			}
			if recs := consume(t, c.ListenAddrs(), topic, len(evs)); len(recs) != len(evs) {
				t.Fatalf("%d delivered, want %d", len(recs), len(evs))
			}
			if requests.Load() != int64(brokers) || partitions.Load() != 3 {
				t.Errorf("%d produce requests holding %d partitions, want %d holding 3", requests.Load(), partitions.Load(), brokers)
			}
		})
	}
}

// In a request of several partitions, the one the broker refuses fails
// alone: its events are reported (and go again), the others are delivered
// once.
func TestOnePartitionRefusedInARequest(t *testing.T) {
	c := newCluster(t)
	var broken atomic.Bool
	c.ControlKey(0, func(req kmsg.Request) (kmsg.Response, error, bool) { // 0: Produce
		c.KeepControl()
		for _, t := range req.(*kmsg.ProduceRequest).Topics {
			for i, p := range t.Partitions {
				if p.Partition == 1 && len(t.Partitions) > 1 && broken.CompareAndSwap(false, true) {
					recs := append([]byte(nil), p.Records...)
					recs[18] ^= 0xff // the record batch's crc: the broker answers CORRUPT_MESSAGE for this partition
					t.Partitions[i].Records = recs
				}
			}
		}
		return nil, nil, false
	})
	o := newOutput(t, Config{Brokers: c.ListenAddrs(), Topic: topic})
	defer o.Close()
	evs := outputtest.Events(300, "refused")
	onOne := map[int]bool{}
	for i, ev := range evs {
		if balancer.Balance(kafkago.Message{Key: []byte(ev.ID)}, 0, 1, 2) == 1 {
			onOne[i] = true
		}
	}
	err := o.Write(context.Background(), evs)
	var pe *auditlogin.PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("write: %v, want a partial error", err)
	}
	if !broken.Load() {
		t.Fatal("no request held partition 1 beside another")
	}
	var again []*auditlogin.Event
	for _, f := range pe.Failed {
		if !onOne[f.Index] || errors.Is(f.Err, auditlogin.ErrPermanent) {
			t.Fatalf("event %d failed (%v): only partition 1's events should, and not permanently", f.Index, f.Err)
		}
		again = append(again, evs[f.Index])
	}
	if len(again) != len(onOne) {
		t.Fatalf("%d events failed, want partition 1's %d", len(again), len(onOne))
	}
	if err := o.Write(context.Background(), again); err != nil {
		t.Fatalf("writing partition 1's events again: %v", err)
	}
	recs := consume(t, c.ListenAddrs(), topic, len(evs))
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Key)]++
	}
	for _, ev := range evs {
		if seen[ev.ID] != 1 {
			t.Errorf("event %s delivered %d times, want once", ev.ID, seen[ev.ID])
		}
	}
}
