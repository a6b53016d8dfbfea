// Command estest runs the Elasticsearch-API test server (outputs/elasticsearch/estest)
// on 127.0.0.1 for benchmarks: it prints its URL and runs until interrupted.
// With -refuse P it answers 429 for a share P of bulk items, at random, as a
// cluster under pressure does; with -down-for D it answers every request
// with 503 (a cluster block) for D after it starts, as a cluster that is
// down does.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

func main() {
	refuse := flag.Float64("refuse", 0, "share of bulk items refused with 429 (0-1)")
	downFor := flag.Duration("down-for", 0, "answer 503 to everything for this long after starting")
	flag.Parse()
	s := estest.New()
	defer s.Close()
	if *downFor > 0 {
		s.Lock()
		s.Down = true
		s.Unlock()
		time.AfterFunc(*downFor, func() {
			s.Lock()
			s.Down = false
			s.Unlock()
			up := time.Now()
			fmt.Fprintf(os.Stderr, "estest: up at %s\n", up.UTC().Format(time.RFC3339Nano))
			// The first document after the return, timed here (a client
			// polling _count adds its own delay, more so under a flood).
			for s.Count("*") == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			fmt.Fprintf(os.Stderr, "estest: first document %.3f s after up\n", time.Since(up).Seconds())
		})
	}
	if *refuse > 0 {
		p := *refuse
		s.Lock()
		s.ItemFault = func(index, id string) int {
			if rand.Float64() < p {
				return 429
			}
			return 0
		}
		s.Unlock()
	}
	fmt.Println(s.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Fprintf(os.Stderr, "estest: %d documents, actions %v, %d overwrites\n", s.Count("*"), s.Ops(), s.Overwrites())
}
