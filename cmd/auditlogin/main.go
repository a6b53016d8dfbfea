// Command auditlogin follows MySQL/MariaDB login audit logs and ships each
// login or login attempt as one normalized JSON event.
//
//	auditlogin run     [--config FILE] [--once]   follow the configured files and ship
//	auditlogin check   [--config FILE]            validate the configuration
//	auditlogin parse   [--format NAME] [FILE...]  convert logs to NDJSON once
//	auditlogin version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/processors"
)

// version is set at build time: make build and the .deb stamp what
// packaging/version prints (-ldflags "-X main.version=...").
var version = ""

var (
	versionOnce sync.Once
	versionStr  string
)

// Version returns the build's version, one string however it was built:
// the stamped one (make build, the .deb); else, for a binary built from a
// checkout that is still there (go run, go build), what packaging/version
// prints for that checkout, the string make build would have stamped; else
// the version or revision the Go toolchain recorded; else "dev".
func Version() string {
	versionOnce.Do(func() { versionStr = findVersion() })
	return versionStr
}

func findVersion() string {
	if version != "" {
		return version
	}
	// The source file's path as compiled (absent with -trimpath).
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		script := filepath.Join(filepath.Dir(file), "..", "..", "packaging", "version")
		if _, err := os.Stat(script); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(ctx, "bash", script).Output(); err == nil {
				if v := strings.TrimSpace(string(out)); v != "" {
					return v
				}
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
	}
	return "dev"
}

const usage = `auditlogin ships MySQL/MariaDB login audit events.

Usage:
  auditlogin run     [--config FILE] [--once] [--dry-run]
                                                 follow the configured logs and ship every event
  auditlogin check   [--config FILE]             validate the configuration, list every problem,
                                                 and test each output's destination (reachability, auth, topic)
  auditlogin parse   [--format NAME] [--strict] [FILE...]
                                                 convert logs (stdin without FILE) to NDJSON on stdout
  auditlogin report  [--format text|json|csv|markdown|html] [--stale-after 7d]
                     [--accounts FILE | --mysql-dsn DSN] [FILE...]
                                                 who logs in, from where, how often; probes, root, stale accounts
  auditlogin setup   [--config FILE] [--kibana URL] [--export-kibana FILE]
                                                 install the Elasticsearch index template and ILM policy,
                                                 and the Kibana data view and dashboard (idempotent)
  auditlogin completion bash|zsh|fish            print a shell completion script
  auditlogin version                             print the version

Every command takes -h/--help.

Without --config, run and check use $AUDITLOGIN_CONFIG, then ./auditlogin.yaml, then
/etc/auditlogin/auditlogin.yaml; with none of them, run uses a built-in demo configuration
that reads the sample logs in ./examples.
`

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1 // the command ran and failed (rejected records with --strict, a failed check)
	exitConfig = 2 // bad usage or configuration
)

// setMemoryLimit sets the Go runtime's soft memory limit in the real
// process (main replaces it) and returns the limit the runtime now holds;
// commands run in-process by tests leave the test binary's runtime alone.
var setMemoryLimit = func(int64) int64 { return 0 }

// setMaxProcs sets GOMAXPROCS in the real process (main replaces it; 0
// leaves it) and returns what it now is; the same for tests as above.
var setMaxProcs = func(int) int { return 0 }

func main() {
	setMaxProcs = func(n int) int {
		if n > 0 {
			runtime.GOMAXPROCS(n)
		}
		return runtime.GOMAXPROCS(0)
	}
	setMemoryLimit = func(n int64) int64 {
		debug.SetMemoryLimit(n)
		return debug.SetMemoryLimit(-1)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "parse":
		return cmdParse(rest, stdin, stdout, stderr)
	case "report":
		return cmdReport(rest, stdin, stdout, stderr)
	case "setup":
		return cmdSetup(rest, stdout, stderr)
	case "completion":
		return cmdCompletion(rest, stdout, stderr)
	case "__man":
		return cmdMan(stdout)
	case canReadCmd:
		return cmdCanRead(rest, stdout)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "auditlogin %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "auditlogin: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
}

// resolveConfig returns the config file to use and a sentence saying why.
// demo is true when no file was found and the built-in demo config applies.
func resolveConfig(flagPath string) (path, why string, demo bool) {
	if flagPath != "" {
		return flagPath, "from --config", false
	}
	if p := os.Getenv(config.EnvPrefix + "CONFIG"); p != "" {
		return p, "from $" + config.EnvPrefix + "CONFIG", false
	}
	if p, ok := config.Find(); ok {
		return p, "found in " + strings.Join(config.SearchPaths, ", "), false
	}
	return "", "no config file in " + strings.Join(config.SearchPaths, " or ") + "; using the built-in demo configuration (reads examples/*.log, writes to stdout and ./auditlogin-data/)", true
}

func loadConfig(flagPath string, stderr io.Writer) (config.Config, string, error) {
	path, why, demo := resolveConfig(flagPath)
	var cfg config.Config
	var err error
	if demo {
		cfg, err = demoConfig()
	} else {
		cfg, err = config.Load(path, os.Environ())
	}
	if err != nil {
		return cfg, why, err
	}
	if err := cfg.Validate(knownFormat, formatNames()); err != nil {
		return cfg, why, err
	}
	if _, err := processors.Compile(cfg.Processors); err != nil {
		return cfg, why, err
	}
	if path != "" {
		why = path + " (" + why + ")"
	}
	return cfg, why, nil
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	once := fs.Bool("once", false, "read every file to its end, ship, commit and exit (no following)")
	dryRun := fs.Bool("dry-run", false, "read and parse as configured from the committed offsets, print what would be shipped to stdout (rejections to stderr), send and commit nothing, exit at the end")
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	cfg, why, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin: %v\n", err)
		return exitConfig
	}
	log := newLogger(cfg.Log, stderr)
	log.Info("starting auditlogin", "version", Version(), "config", why)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		next, err := runUntilReload(ctx, cfg, hup, *cfgPath, agentOptions{once: *once, dryRun: *dryRun, stdout: stdout, stderr: stderr, log: log})
		if err != nil {
			log.Error("auditlogin stopped on an error", "err", err)
			var ce config.Errors
			if errors.As(err, &ce) {
				return exitConfig
			}
			return exitFail
		}
		if next == nil {
			return exitOK
		}
		cfg = *next
		log = newLogger(cfg.Log, stderr)
		log.Info("configuration reloaded; following files again from the committed offsets", "config", *cfgPath)
	}
}

// runUntilReload runs the agent until ctx ends (nil, err) or SIGHUP brings
// a valid new configuration (&cfg, nil). A reload is a graceful stop (drain,
// commit what was acknowledged) and a start with the new configuration from
// the registry: committed work is not sent again, inputs and outputs change
// as configured. A new configuration that does not load or validate is
// refused with its errors, and the running one goes on.
func runUntilReload(ctx context.Context, cfg config.Config, hup <-chan os.Signal, cfgPath string, o agentOptions) (*config.Config, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next *config.Config
	watching := make(chan struct{})
	defer close(watching)
	go func() {
		for {
			select {
			case <-watching:
				return
			case <-hup:
				if o.once {
					o.log.Info("SIGHUP ignored: a one-shot run does not reload")
					continue
				}
				c, why, err := loadConfig(cfgPath, io.Discard)
				if err != nil {
					o.log.Error("SIGHUP: the new configuration is refused; the running one goes on", "config", why, "err", err.Error())
					continue
				}
				o.log.Info("SIGHUP: reloading the configuration: draining and committing first", "config", why)
				next = &c
				cancel()
				return
			}
		}
	}()
	err := runAgent(runCtx, cfg, o)
	if ctx.Err() != nil || err != nil || o.once {
		return nil, err
	}
	return next, nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	asUser := fs.String("user", "", "check that this user (the service's, e.g. auditlogin) can read the log files; needs root")
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	path, why, demo := resolveConfig(*cfgPath)
	if demo {
		fmt.Fprintf(stderr, "auditlogin: %s\n", why)
	}
	cfg, why, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin: %s: %v\n", orDemo(path), err)
		return exitFail
	}
	fmt.Fprintf(stdout, "configuration OK: %s\n", why)
	status := exitOK
	for i, in := range cfg.Inputs {
		files := matches(in.Paths)
		note := ""
		if len(files) == 0 {
			note = " (no file matches yet: the agent waits for one)"
		}
		fmt.Fprintf(stdout, "  inputs[%d]: %s, %s, %d file(s) match now%s\n", i, in.Format, strings.Join(in.Paths, " "), len(files), note)
		who := "this user"
		if *asUser != "" {
			who = "user " + *asUser
		}
		bad, err := readable(files, *asUser)
		if err != nil {
			fmt.Fprintf(stderr, "auditlogin: inputs[%d]: %v\n", i, err)
			status = exitFail
			continue
		}
		for _, b := range bad {
			fmt.Fprintf(stderr, "auditlogin: inputs[%d].paths: %s cannot read %s\n", i, who, b)
			status = exitFail
		}
		if len(files) > 0 && len(bad) == 0 {
			fmt.Fprintf(stdout, "  inputs[%d]: %s can read every matching file\n", i, who)
		}
	}
	log := newLogger(config.Log{Level: "warn", Format: "text"}, stderr)
	// check has no side effects: the file output is described, not opened
	// (opening creates it, as root, where the service user could not write).
	if f := cfg.Outputs.File; f != nil {
		fmt.Fprintf(stdout, "  output file: writes %s (rotated at %d bytes, %d kept)\n", f.Path, f.MaxSize, f.MaxFiles)
		cfg.Outputs.File = nil
	}
	outs, err := buildOutputs(cfg, io.Discard, log)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin: %v\n", err)
		return exitFail
	}
	for _, o := range outs {
		c, ok := o.(auditlogin.Checker)
		if !ok {
			fmt.Fprintf(stdout, "  output %s: ready\n", o.Name())
			o.Close()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		report, err := c.Check(ctx)
		cancel()
		for _, line := range report {
			fmt.Fprintf(stdout, "  output %s: %s\n", o.Name(), line)
		}
		if err != nil {
			fmt.Fprintf(stderr, "auditlogin: output %s: %v\n", o.Name(), err)
			status = exitFail
		}
		o.Close()
	}
	fmt.Fprintf(stdout, "  registry: %s\n  dead letters: %s\n", cfg.Registry.Path, cfg.DeadLetter.Path)
	return status
}

func orDemo(path string) string {
	if path == "" {
		return "built-in demo configuration"
	}
	return path
}
