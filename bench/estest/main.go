// Command estest runs the Elasticsearch-API test server (outputs/elasticsearch/estest)
// on 127.0.0.1 for benchmarks: it prints its URL and runs until interrupted.
// With -refuse P it answers 429 for a share P of bulk items, at random, as a
// cluster under pressure does.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"

	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

func main() {
	refuse := flag.Float64("refuse", 0, "share of bulk items refused with 429 (0-1)")
	flag.Parse()
	s := estest.New()
	defer s.Close()
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
