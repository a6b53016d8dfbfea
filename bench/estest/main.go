// Command estest runs the Elasticsearch-API test server (outputs/elasticsearch/estest)
// on 127.0.0.1 for benchmarks: it prints its URL and runs until interrupted.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/auditlogin/auditlogin/outputs/elasticsearch/estest"
)

func main() {
	s := estest.New()
	defer s.Close()
	fmt.Println(s.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Fprintf(os.Stderr, "estest: %d documents\n", s.Count("*"))
}
