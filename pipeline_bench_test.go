package auditlogin_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/enrich"
	"github.com/auditlogin/auditlogin/parser"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a Concurrent output that accepts everything after reading
// each event's encoding (as a network output copies it into a request).
type discard struct{ bytes atomic.Int64 }

func (*discard) Name() string { return "discard" }
func (*discard) Workers() int { return 2 }
func (*discard) Close() error { return nil }
func (d *discard) Write(_ context.Context, batch []*auditlogin.Event) error {
	n := 0
	for _, ev := range batch {
		n += len(ev.Encoded)
	}
	d.bytes.Add(int64(n))
	return nil
}

// benchLines returns n audit_login records as the plugin writes them, in
// chunks of Lines as the tailer hands them over (256 KiB reads): mostly
// successful logins from 200 hosts × 250 addresses and 10 accounts, 10 %
// failures, a few probes, as bench/gen writes them.
func benchLines(n int, p auditlogin.Parser) [][]auditlogin.Line {
	rng := rand.New(rand.NewPCG(1, 42))
	users := []string{"web_user", "web_user", "web_user", "api", "api", "reporting", "backup_user", "etl", "monitor", "root"}
	t := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	var chunks [][]auditlogin.Line
	var cur []auditlogin.Line
	buf := make([]byte, 0, 256<<10)
	off := int64(0)
	for i := 0; i < n; i++ {
		t = t.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
		host := rng.IntN(200)
		user, priv, typ := users[rng.IntN(len(users))], "", "successful_login"
		clientHost, ip := fmt.Sprintf("app-%03d.prod.example.com", host), fmt.Sprintf("10.%d.%d.%d", host/100, host%100, rng.IntN(250)+1)
		switch r := rng.IntN(1000); {
		case r < 100:
			typ = "failed_login"
		case r < 105:
			typ, user, priv, clientHost = "failed_login", "(null)", "(null)", "(null)"
		default:
			priv = user
		}
		line := fmt.Appendf(nil, `{"ts":"%s","type":"%s","myhost":"db-01","thread":"%d","user":"%s","priv_user":"%s","host":"%s","ip":"%s"}`,
			t.Format("2006-01-02 15:04:05"), typ, 74153868+i, user, priv, clientHost, ip)
		if len(buf)+len(line) > 256<<10 {
			chunks, cur, buf = append(chunks, cur), nil, make([]byte, 0, 256<<10)
		}
		buf = append(buf, line...)
		end := off + int64(len(line)) + 1
		cur = append(cur, auditlogin.Line{Data: buf[len(buf)-len(line):], Parser: p,
			Pos: auditlogin.Position{File: auditlogin.FileID{Dev: 1, Ino: 1}, Path: "/var/lib/mysql/audit_login.log", Offset: off, End: end}})
		off = end
	}
	return append(chunks, cur)
}

// BenchmarkPipeline runs audit_login records through the agent's hot path
// with its default settings: parse, normalize, enrich (new sources on),
// encode, track, batch, deliver to an output that reads each encoding, and
// acknowledge. The tailer and the network are not in it (bench/kafka.sh
// measures the whole agent).
func BenchmarkPipeline(b *testing.B) {
	p := parser.NewAuditLogin(parser.Options{Location: time.UTC})
	const n = 200000
	chunks := benchLines(n, p)
	tagger, err := enrich.New(enrich.Config{NewSource: true})
	if err != nil {
		b.Fatal(err)
	}
	agent := &auditlogin.AgentInfo{Hostname: "db-01", Version: "bench"}
	out := &discard{}
	// Line slices come back through Recycle once parsed, as to the tailer.
	free := make(chan []auditlogin.Line, 8)
	pipe, err := auditlogin.NewPipeline(auditlogin.PipelineConfig{Outputs: []auditlogin.Output{out},
		Enrich: func(ev *auditlogin.Event) { ev.Agent = agent; tagger.Enrich(ev) },
		Recycle: func(ls []auditlogin.Line) {
			select {
			case free <- ls[:0]:
			default:
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	lines := make(chan []auditlogin.Line, 2)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	go func() {
		sent := 0
		// The tracker wants offsets that grow: each pass over the records
		// is another file.
		for pass := uint64(1); sent < b.N; pass++ {
			for _, c := range chunks {
				if rest := b.N - sent; rest < len(c) {
					c = c[:rest]
				}
				var ls []auditlogin.Line
				select {
				case ls = <-free:
				default:
				}
				for _, l := range c {
					l.Pos.File.Ino = pass
					ls = append(ls, l)
				}
				lines <- ls
				sent += len(ls)
				if sent >= b.N {
					break
				}
			}
		}
		close(lines)
	}()
	if err := pipe.Run(context.Background(), lines); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/event")
	if got := pipe.Stats().Shipped["discard"]; got != int64(b.N) {
		b.Fatalf("shipped %d events, want %d", got, b.N)
	}
	b.ReportMetric(float64(out.bytes.Load())/float64(b.N), "json-bytes/event")
}
