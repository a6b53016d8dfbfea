// Command gen writes realistic audit_login.log records, as the original
// plugin's fprintf does, for benchmarks and load tests: mostly successful
// application logins from a pool of hosts, ~10% failed logins, some root and
// no-credential probes, and a few hostile user names (quotes, backslashes,
// newlines). The output is deterministic for a given seed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"
)

func main() {
	n := flag.Int("n", 1000000, "records to write")
	seed := flag.Uint64("seed", 1, "random seed")
	servers := flag.Int("servers", 1, "distinct myhost values")
	span := flag.Duration("span", 0, "spread the records over this long, busier by day than by night (0: 0-40 ms apart)")
	flag.Parse()
	rng := rand.New(rand.NewPCG(*seed, 42))
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer w.Flush()
	users := []string{"web_user", "web_user", "web_user", "api", "api", "reporting", "backup_user", "etl", "monitor", "root"}
	t := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for i := 0; i < *n; i++ {
		if *span > 0 {
			// Mean gap span/n, scaled by the hour's activity (peak at 14h).
			h := float64(t.Hour()) + float64(t.Minute())/60
			weight := 0.25 + 0.75*math.Exp(-(h-14)*(h-14)/18)
			t = t.Add(time.Duration(2 * rng.Float64() * float64(*span) / float64(*n) * 0.55 / weight))
		} else {
			t = t.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
		}
		host := rng.IntN(200)
		user, priv, typ := users[rng.IntN(len(users))], "", "successful_login"
		clientHost, ip := fmt.Sprintf("app-%03d.prod.example.com", host), fmt.Sprintf("10.%d.%d.%d", host/100, host%100, rng.IntN(250)+1)
		switch r := rng.IntN(1000); {
		case r < 100:
			typ = "failed_login"
		case r < 105: // a probe: TCP connect, no handshake
			typ, user, priv, clientHost = "failed_login", "(null)", "(null)", "(null)"
		case r < 106:
			typ, user = "failed_login", []string{`x"y`, `a\b`, "two\nlines", `","type":"successful_login`}[rng.IntN(4)]
		default:
			priv = user
		}
		if user == "root" && typ == "successful_login" {
			clientHost, ip = "localhost", "(null)"
		}
		fmt.Fprintf(w, `{"ts":"%s","type":"%s","myhost":"db-%02d","thread":"%d","user":"%s","priv_user":"%s","host":"%s","ip":"%s"}`+"\n",
			t.Format("2006-01-02 15:04:05"), typ, i%*servers, 74153868+i, user, priv, clientHost, ip)
	}
}
