package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// agentBinary builds the real binary once per test run.
func agentBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "auditlogin-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // tests run it as other users too
		agentBin = filepath.Join(dir, "auditlogin")
		out, err := exec.Command("go", "build", "-race", "-o", agentBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

// pluginRecord writes a record exactly as the original plugin's fprintf does.
func pluginRecord(thread int, user string) string {
	typ, priv := "successful_login", "app"
	if thread%7 == 0 {
		typ, priv = "failed_login", ""
	}
	return fmt.Sprintf(`{"ts":"%s","type":"%s","myhost":"db-chaos","thread":"%d","user":"%s","priv_user":"%s","host":"app-%d.example","ip":"10.1.%d.%d"}`+"\n",
		time.Now().Format("2006-01-02 15:04:05"), typ, thread, user, priv, thread%50, thread%250, thread%200)
}

// agentStarter returns a function that starts the agent binary with
// cfgPath, its stderr appended to logPath (one file across restarts).
func agentStarter(t *testing.T, bin, cfgPath, logPath string) func() *exec.Cmd {
	t.Helper()
	agentLog, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentLog.Close() })
	return func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = io.Discard, agentLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
}

// chaosWriter plays the database server: it appends records and rotates its
// log, alternating rename ("create") and copytruncate.
type chaosWriter struct {
	mu       sync.Mutex // held for each record and rotation
	path     string
	f        *os.File
	rotated  int
	rotEvery int
}

func (w *chaosWriter) open(t *testing.T) {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w.f = f
}

func (w *chaosWriter) shift() {
	for i := w.rotated; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", w.path, i), fmt.Sprintf("%s.%d", w.path, i+1))
	}
	w.rotated++
}

func (w *chaosWriter) rotate(t *testing.T, n int) {
	w.shift()
	if n%2 == 0 { // rename, then the server reopens
		w.f.Close()
		if err := os.Rename(w.path, w.path+".1"); err != nil {
			t.Fatal(err)
		}
		w.open(t)
		return
	}
	// copytruncate: the server keeps writing to its descriptor (O_APPEND)
	src, err := os.Open(w.path)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := os.Create(w.path + ".1")
	io.Copy(dst, src)
	src.Close()
	dst.Close()
	if err := os.Truncate(w.path, 0); err != nil {
		t.Fatal(err)
	}
}

var threadField = regexp.MustCompile(`"thread":"([0-9]+)"`)

// committedThreads returns the records (by thread) that the registry at
// path has committed: for each of its entries, the records before the
// entry's offset in the log file whose first bytes have the entry's
// fingerprint, wherever rotation has moved it since. An entry whose file is
// gone commits nothing here (the bound it gives is only looser).
func committedThreads(t *testing.T, path, logDir string) map[int]bool {
	t.Helper()
	committed := map[int]bool{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return committed // killed before its first commit
	}
	var reg struct {
		Files []struct {
			FPLen  int    `json:"fp_len"`
			FP     string `json:"fp"`
			Offset int64  `json:"offset"`
		} `json:"files"`
	}
	if err != nil || json.Unmarshal(data, &reg) != nil {
		t.Fatalf("registry after a kill: %v: %q", err, data)
	}
	names, _ := filepath.Glob(filepath.Join(logDir, "audit_login.log*"))
	logs := make([][]byte, 0, len(names))
	for _, l := range names {
		b, _ := os.ReadFile(l)
		logs = append(logs, b)
	}
	for _, e := range reg.Files {
		for _, b := range logs {
			if e.FPLen == 0 || len(b) < e.FPLen || int64(len(b)) < e.Offset {
				continue
			}
			if sum := sha256.Sum256(b[:e.FPLen]); hex.EncodeToString(sum[:]) != e.FP {
				continue
			}
			for _, m := range threadField.FindAllSubmatch(b[:e.Offset], -1) {
				n, _ := strconv.Atoi(string(m[1]))
				committed[n] = true
			}
			break
		}
	}
	return committed
}

func readThreads(t *testing.T, dir string) (ids []string, threads map[string]int) {
	t.Helper()
	threads = map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dir, "events.ndjson*"))
	// rotated output files first, oldest first, then the live one
	var ordered []string
	for i := 50; i >= 1; i-- {
		p := filepath.Join(dir, fmt.Sprintf("events.ndjson.%d", i))
		for _, f := range files {
			if f == p {
				ordered = append(ordered, p)
			}
		}
	}
	ordered = append(ordered, filepath.Join(dir, "events.ndjson"))
	for _, f := range ordered {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev struct {
				ID     string `json:"id"`
				Thread string `json:"thread"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				continue // a line torn by kill -9 (never committed, so shipped again)
			}
			ids = append(ids, ev.ID)
			threads[ev.Thread]++
		}
		fh.Close()
	}
	return ids, threads
}

// TestChaosKill9 kills the agent with SIGKILL at random moments while a
// writer appends and rotates (rename and copytruncate, several times), then
// checks that every record written is in the output at least once, and that
// each restart re-delivers no more than what was not committed when it was
// killed: the records already in the output that the registry, read at the
// kill, had not committed (acknowledged since its last commit; while the
// agent catches up, that is far more than the writer's rate over a commit
// interval). AUDITLOGIN_SOAK=1 runs a long version.
func TestChaosKill9(t *testing.T) {
	records, rotEvery, rate := 3000, 400, 400 // rate: records per second
	if os.Getenv("AUDITLOGIN_SOAK") != "" {
		records, rotEvery, rate = 200000, 15000, 4000
	}
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	bin := agentBinary(t)
	dir := t.TempDir()
	logDir, outDir := filepath.Join(dir, "logs"), filepath.Join(dir, "out")
	os.MkdirAll(logDir, 0o755)
	logPath := filepath.Join(logDir, "audit_login.log")
	regPath := filepath.Join(dir, "data", "registry.json")
	const maxInFlight, batch = 64, 16
	cfg := fmt.Sprintf(`
inputs:
  - paths: [%q]
    timezone: UTC
registry: {path: %q, flush_interval: 30ms}
outputs:
  file: {path: %q, max_size: 2MiB, max_files: 50}
pipeline: {batch_size: %d, max_in_flight: %d, flush_interval: 20ms, shutdown_timeout: 5s}
tail: {scan_interval: 50ms, poll_interval: 10ms, rotate_wait: 300ms}
log: {level: debug, format: json}
`, logPath, regPath, filepath.Join(outDir, "events.ndjson"), batch, maxInFlight)
	cfgPath := filepath.Join(dir, "auditlogin.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	startAgent := agentStarter(t, bin, cfgPath, filepath.Join(dir, "agent.log"))
	dumpLog := func() {
		data, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		var keep []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, `"WARN"`) || strings.Contains(l, `"ERROR"`) || strings.Contains(l, "rotat") ||
				strings.Contains(l, "truncat") || strings.Contains(l, "starting") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 120 {
			keep = keep[len(keep)-120:]
		}
		t.Logf("agent log (warnings, rotations, starts):\n%s", strings.Join(keep, "\n"))
	}

	w := &chaosWriter{path: logPath, rotEvery: rotEvery}
	w.open(t)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(time.Second / time.Duration(rate/10))
		defer tick.Stop()
		rot := 0
		for i := 1; i <= records; i++ {
			user := "app"
			switch i % 97 {
			case 3:
				user = `evil"user\`
			case 5:
				user = "two\nlines"
			}
			w.mu.Lock() // not while a kill's registry and logs are read
			w.f.WriteString(pluginRecord(i, user))
			if i%rotEvery == 0 {
				w.rotate(t, rot)
				rot++
			}
			w.mu.Unlock()
			if i%10 == 0 {
				<-tick.C
			}
		}
		w.f.Close()
	}()

	// Kill -9 at random moments until the writer is done.
	var segments []int // output events present at each kill
	var allowed []int  // duplicates each restart may bring
	kills := 0
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for done := false; !done; {
		cmd := startAgent()
		time.Sleep(time.Duration(150+rng.IntN(500)) * time.Millisecond)
		select {
		case <-writerDone:
			done = true
		default:
		}
		if done {
			// Final run: let it finish, then stop it gracefully.
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				if _, th := readThreads(t, outDir); len(th) >= records {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				dumpLog()
				t.Fatalf("agent did not exit 0 on SIGTERM: %v", err)
			}
			break
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
		w.mu.Lock()
		committed := committedThreads(t, regPath, logDir)
		ids, threads := readThreads(t, outDir)
		w.mu.Unlock()
		segments = append(segments, len(ids))
		// What a restart may send again: the records in the output that the
		// registry had not committed at the kill (an output line torn by
		// the kill is not in the output, and sent again is no duplicate).
		// Not the registry's age, nor a count from the writer's rate: a
		// restart that re-sent everything since the previous start would
		// pass the one, and a catch-up after a restart, faster than the
		// writer, fails the other with a slow fsync.
		again := 0
		for th := range threads {
			if n, _ := strconv.Atoi(th); !committed[n] {
				again++
			}
		}
		allowed = append(allowed, again)
	}

	ids, threads := readThreads(t, outDir)
	var missing []int
	for i := 1; i <= records; i++ {
		if threads[fmt.Sprint(i)] == 0 {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		dumpLog()
		t.Fatalf("%d of %d records lost after %d kills (first: %v)", len(missing), records, kills, missing[:min(10, len(missing))])
	}
	// Duplicates: each restart may re-deliver only what the output held and
	// the registry had not committed at the kill.
	seen := map[string]bool{}
	start, worst, total := 0, 0, 0
	for k, end := range append(segments, len(ids)) {
		dups := 0
		for _, id := range ids[start:end] {
			if seen[id] {
				dups++
			}
			seen[id] = true
		}
		if k > 0 && dups > allowed[k-1] {
			dumpLog()
			t.Errorf("restart %d re-delivered %d events: more than the output held that the registry had not committed at the kill (%d)", k, dups, allowed[k-1])
		}
		worst = max(worst, dups)
		total += dups
		start = end
	}
	t.Logf("%d records, %d kills, %d rotations: none lost; %d duplicates in all, at most %d after one restart",
		records, kills, w.rotated, total, worst)
	if kills < 3 {
		t.Errorf("only %d kills: the test did not exercise restarts", kills)
	}
}
