// Command kfake runs an in-memory Kafka-protocol broker (franz-go's kfake) on
// 127.0.0.1 for benchmarks and manual tries: kfake -port 9092 -topics a,b.
// It prints its address and runs until interrupted. With -delay, every byte
// it sends arrives that much later: a remote broker's latency. With -stats
// it prints, on exit, the requests it answered by kind and version, and the
// partition batches the produce requests held (a producer that sends few,
// full batches costs a broker less than one that sends many small ones).
// With -segment-bytes, a partition's log rolls to a new segment past that
// size (log.segment.bytes). kfake keeps a segment in memory and grows it by
// doubling, copying all of it each time; at its default of 100 MiB the
// copies of the last doublings (64 MiB into a new 128 MiB, page faults on
// all of it) stall the broker for 20-200 ms at a time, answering nothing,
// where a real broker appends to a file in the page cache. A few MiB keep
// kfake's stalls to a few milliseconds.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	port := flag.Int("port", 9092, "port to listen on (127.0.0.1)")
	topics := flag.String("topics", "", "comma-separated topics to create")
	partitions := flag.Int("partitions", 3, "partitions per created topic")
	delay := flag.Duration("delay", 0, "one-way latency added to everything the broker sends (a remote broker: its round trip)")
	segmentBytes := flag.Int64("segment-bytes", 0, "roll a partition's log to a new segment past this size (log.segment.bytes; 0: kfake's default, 100 MiB)")
	stats := flag.Bool("stats", false, "on exit, print to stderr how many requests of each kind it answered, and the partition batches produce requests held")
	flag.Parse()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(*port), kfake.AllowAutoTopicCreation()}
	if *segmentBytes > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.FormatInt(*segmentBytes, 10)}))
	}
	if *delay > 0 {
		opts = append(opts, kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return delayListener{ln, *delay}, nil
		}))
	}
	if *topics != "" {
		opts = append(opts, kfake.SeedTopics(int32(*partitions), strings.Split(*topics, ",")...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	defer c.Close()
	if *stats {
		defer countRequests(c)()
	}
	fmt.Println(strings.Join(c.ListenAddrs(), ","))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}

// countRequests counts every request the cluster answers from now on; the
// function it returns prints the counts.
func countRequests(c *kfake.Cluster) func() {
	var mu sync.Mutex
	counts := map[string]int{}
	batches := 0
	c.Control(func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		counts[fmt.Sprintf("%s v%d", kmsg.NameForKey(r.Key()), r.GetVersion())]++
		if p, ok := r.(*kmsg.ProduceRequest); ok {
			for _, t := range p.Topics {
				batches += len(t.Partitions)
			}
		}
		return nil, nil, false // answered as usual
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stderr, "kfake answered %v; produce requests held %d partition batches\n", counts, batches)
	}
}
