package metrics

import (
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// expo builds a scrape in Prometheus' text exposition format.
type expo struct{ b []byte }

// helpEscaper escapes a HELP text as the format wants.
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// family starts a metric family: its HELP and TYPE lines.
func (e *expo) family(name, typ, help string) {
	e.b = append(e.b, "# HELP "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, helpEscaper.Replace(help)...)
	e.b = append(e.b, "\n# TYPE "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, typ...)
	e.b = append(e.b, '\n')
}

// sample writes one sample; labels are name, value pairs.
func (e *expo) sample(name string, v float64, labels ...string) {
	e.b = append(e.b, name...)
	if len(labels) > 0 {
		e.b = append(e.b, '{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, labels[i]...)
			e.b = append(e.b, `="`...)
			e.b = appendLabelValue(e.b, labels[i+1])
			e.b = append(e.b, '"')
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, ' ')
	e.b = appendValue(e.b, v)
	e.b = append(e.b, '\n')
}

// appendLabelValue escapes a label value: backslash, double quote and
// newline, as the format wants (a file path may hold any of them).
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

func appendValue(b []byte, v float64) []byte {
	switch {
	case v != v:
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// histograms is a histogram per value of one label (a Prometheus
// HistogramVec): cumulative buckets, sum and count.
type histograms struct {
	name, help, label string
	bounds            []float64
	mu                sync.Mutex
	by                map[string]*histogram
}

type histogram struct {
	counts []uint64 // per bound, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

func newHistograms(name, help, label string, bounds []float64) *histograms {
	return &histograms{name: name, help: help, label: label, bounds: bounds, by: map[string]*histogram{}}
}

// exponentialBuckets returns n bounds from start, each factor times the last.
func exponentialBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

func (h *histograms) observe(label string, v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	x := h.by[label]
	if x == nil {
		x = &histogram{counts: make([]uint64, len(h.bounds)+1)}
		h.by[label] = x
	}
	x.counts[sort.SearchFloat64s(h.bounds, v)]++ // the first bound >= v
	x.sum += v
	x.n++
}

func (h *histograms) write(e *expo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.by) == 0 {
		return
	}
	e.family(h.name, "histogram", h.help)
	for _, l := range sortedKeys(h.by) {
		x := h.by[l]
		var cum uint64
		for i, c := range x.counts {
			cum += c
			le := "+Inf"
			if i < len(h.bounds) {
				le = strconv.FormatFloat(h.bounds[i], 'g', -1, 64)
			}
			e.sample(h.name+"_bucket", float64(cum), h.label, l, "le", le)
		}
		e.sample(h.name+"_sum", x.sum, h.label, l)
		e.sample(h.name+"_count", float64(x.n), h.label, l)
	}
}

// runtimeSamples are the Go runtime's metrics read at each scrape, under
// the names Prometheus' Go collector gives them.
var runtimeSamples = []struct{ key, name, typ, help string }{
	{"/sched/goroutines:goroutines", "go_goroutines", "gauge", "Number of goroutines that currently exist."},
	{"/memory/classes/heap/objects:bytes", "go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use."},
	{"/memory/classes/total:bytes", "go_memstats_sys_bytes", "gauge", "Number of bytes obtained from the system."},
	{"/gc/heap/goal:bytes", "go_memstats_next_gc_bytes", "gauge", "Number of heap bytes when next garbage collection will take place."},
	{"/gc/heap/allocs:bytes", "go_memstats_alloc_bytes_total", "counter", "Total number of bytes allocated, even if freed."},
}

// writeRuntime writes the Go runtime's and the process's metrics (go_*,
// process_*: CPU seconds, resident memory, open files, start time).
func writeRuntime(e *expo) {
	ss := make([]metrics.Sample, len(runtimeSamples))
	for i, r := range runtimeSamples {
		ss[i].Name = r.key
	}
	metrics.Read(ss)
	e.family("go_info", "gauge", "Information about the Go environment.")
	e.sample("go_info", 1, "version", runtime.Version())
	for i, r := range runtimeSamples {
		var v float64
		switch ss[i].Value.Kind() {
		case metrics.KindUint64:
			v = float64(ss[i].Value.Uint64())
		case metrics.KindFloat64:
			v = ss[i].Value.Float64()
		default:
			continue // not known to this Go version
		}
		e.family(r.name, r.typ, r.help)
		e.sample(r.name, v)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		e.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
		e.sample("process_cpu_seconds_total", float64(ru.Utime.Nano()+ru.Stime.Nano())/1e9)
	}
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command (in parentheses, which may hold spaces).
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			f := strings.Fields(string(stat[i+1:]))
			// f[0] is field 3 (state): vsize is field 23, rss 24 (pages),
			// starttime 22 (clock ticks since boot).
			if len(f) > 21 {
				vsize, _ := strconv.ParseFloat(f[20], 64)
				rss, _ := strconv.ParseFloat(f[21], 64)
				start, _ := strconv.ParseFloat(f[19], 64)
				e.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
				e.sample("process_virtual_memory_bytes", vsize)
				e.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
				e.sample("process_resident_memory_bytes", rss*float64(os.Getpagesize()))
				if boot := bootTime(); boot > 0 {
					e.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
					e.sample("process_start_time_seconds", boot+start/100) // USER_HZ is 100 on Linux
				}
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		e.family("process_open_fds", "gauge", "Number of open file descriptors.")
		e.sample("process_open_fds", float64(len(fds)))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		e.family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
		e.sample("process_max_fds", float64(lim.Cur))
	}
}

// bootTime is the system's boot time (unix seconds) from /proc/stat.
func bootTime() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			t, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return t
		}
	}
	return 0
}
