// Command bulkpost is the ceiling for bulk ingestion: it turns NDJSON events
// into bulk bodies of -batch events beforehand, then only POSTs them, one
// request at a time, as fast as the server answers, and prints events/s.
// It asks for the short answer (filter_path: errors, items' status and
// error), as the agent does.
//
//	bulkpost -url http://127.0.0.1:9200 -batch 1000 events.ndjson
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	url := flag.String("url", "", "bulk endpoint base URL (…/_bulk is appended)")
	batch := flag.Int("batch", 1000, "events per bulk request")
	index := flag.String("index", "bench-ceiling", "index")
	flag.Parse()
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var bodies [][]byte
	var cur bytes.Buffer
	n, events := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(&cur, "{\"create\":{\"_index\":%q}}\n", *index)
		cur.Write(sc.Bytes())
		cur.WriteByte('\n')
		n++
		events++
		if n == *batch {
			bodies = append(bodies, bytes.Clone(cur.Bytes()))
			cur.Reset()
			n = 0
		}
	}
	if n > 0 {
		bodies = append(bodies, bytes.Clone(cur.Bytes()))
	}
	start := time.Now()
	for _, b := range bodies {
		req, _ := http.NewRequest(http.MethodPost, *url+"/_bulk?filter_path=errors,items.*.error,items.*.status", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			fmt.Fprintln(os.Stderr, "bulk:", res.Status)
			os.Exit(1)
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%d %.3f\n", events, secs)
}
