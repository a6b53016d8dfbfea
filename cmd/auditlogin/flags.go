package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// helps are each subcommand's description, printed by -h/--help above its
// flags (and in the man page).
var helps = map[string]string{
	"run": `usage: auditlogin run [--config FILE] [--once] [--dry-run]

Follows the configured logs and ships every login and login attempt to the
configured outputs, committing each file's offset once every output has the
events before it (or holds them in its spool). SIGHUP reloads the
configuration; SIGTERM and SIGINT drain and commit. Without --config:
$AUDITLOGIN_CONFIG, ./auditlogin.yaml, /etc/auditlogin/auditlogin.yaml, else a
built-in demo that reads the sample logs in ./examples.
`,
	"check": `usage: auditlogin check [--config FILE] [--user NAME]

Validates the configuration (every problem, with its field path), tests each
output's destination (reachability, authentication, topic, template) and, with
--user, whether that user can read the log files. Exit 0: ready to run.
`,
	"parse": `usage: auditlogin parse [--format NAME|auto] [--timezone ZONE] [--strict] [FILE...]

Converts logs (stdin without FILE) to the agent's NDJSON events on stdout once;
each record that cannot be parsed goes to stderr as FILE:OFFSET: reason.
`,
	"report": reportUsage,
	"setup": `usage: auditlogin setup [--config FILE] [--kibana URL] [--export-kibana FILE]

Installs what Elasticsearch needs (ILM policy, index template) and, with
--kibana, the Kibana data view, visualizations and dashboard; idempotent.
--export-kibana writes the Kibana objects to a file for a manual import.
`,
}

// parseFlags parses a subcommand's flags. -h/--help prints the
// subcommand's description and flags to stdout (exit 0); an unknown flag or
// a bad value is one line on stderr with a hint (exit 2). done is true when
// the command must return code now.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (done bool, code int) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return false, exitOK
	case errors.Is(err, flag.ErrHelp):
		printHelp(fs, stdout)
		return true, exitOK
	default:
		fmt.Fprintf(stderr, "auditlogin %s: %v\nRun 'auditlogin %s --help' for its flags.\n", fs.Name(), err, fs.Name())
		return true, exitConfig
	}
}

// printHelp writes a subcommand's description and flags.
func printHelp(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, helps[fs.Name()])
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// subcommands are the documented subcommands, in the order help lists them.
var subcommands = []string{"run", "check", "parse", "report", "setup", "completion", "version"}

// subcommandFlags returns a subcommand's flags, read from its own --help.
func subcommandFlags(name string) []string {
	if _, ok := helps[name]; !ok {
		return nil
	}
	var out strings.Builder
	run([]string{name, "--help"}, strings.NewReader(""), &out, io.Discard)
	var flags []string
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(line, "  -") {
			flags = append(flags, "-"+f[0])
		}
	}
	return flags
}

const completionUsage = `usage: auditlogin completion bash|zsh|fish

Prints a shell completion script for the subcommands and their flags:
  auditlogin completion bash > /etc/bash_completion.d/auditlogin
  auditlogin completion zsh > "${fpath[1]}/_auditlogin"
  auditlogin completion fish > ~/.config/fish/completions/auditlogin.fish
`

// cmdCompletion prints a completion script for shell.
func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, completionUsage)
		return exitOK
	}
	if len(args) != 1 {
		fmt.Fprintf(stderr, "auditlogin completion: want one shell: bash, zsh or fish\n")
		return exitConfig
	}
	switch args[0] {
	case "bash":
		var cases strings.Builder
		for _, c := range subcommands {
			fmt.Fprintf(&cases, "\t\t%s) opts=%q ;;\n", c, strings.Join(subcommandFlags(c), " "))
		}
		fmt.Fprintf(stdout, `# bash completion for auditlogin (auditlogin completion bash)
_auditlogin() {
	local cur=${COMP_WORDS[COMP_CWORD]} opts
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	case ${COMP_WORDS[1]} in
%s		*) opts="" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -F _auditlogin auditlogin
`, strings.Join(subcommands, " "), cases.String())
	case "zsh":
		var cases strings.Builder
		for _, c := range subcommands {
			var specs []string
			for _, f := range subcommandFlags(c) {
				specs = append(specs, "'"+f+"'")
			}
			fmt.Fprintf(&cases, "\t\t%s) _arguments %s '*:file:_files' ;;\n", c, strings.Join(specs, " "))
		}
		fmt.Fprintf(stdout, `#compdef auditlogin
# zsh completion for auditlogin (auditlogin completion zsh)
_auditlogin() {
	if (( CURRENT == 2 )); then
		compadd %s
		return
	fi
	case $words[2] in
%s	esac
}
_auditlogin "$@"
`, strings.Join(subcommands, " "), cases.String())
	case "fish":
		fmt.Fprintf(stdout, "# fish completion for auditlogin (auditlogin completion fish)\n")
		fmt.Fprintf(stdout, "complete -c auditlogin -n __fish_use_subcommand -f -a %q\n", strings.Join(subcommands, " "))
		for _, c := range subcommands {
			for _, f := range subcommandFlags(c) {
				fmt.Fprintf(stdout, "complete -c auditlogin -n '__fish_seen_subcommand_from %s' -l %s\n", c, strings.TrimPrefix(f, "--"))
			}
		}
	default:
		fmt.Fprintf(stderr, "auditlogin completion: %q: want bash, zsh or fish\n", args[0])
		return exitConfig
	}
	return exitOK
}

// cmdMan prints the man page (roff), made from the same help texts.
func cmdMan(stdout io.Writer) int {
	esc := func(s string) string {
		s = strings.ReplaceAll(s, `\`, `\e`)
		var b strings.Builder
		for _, line := range strings.Split(s, "\n") {
			if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
				line = `\&` + line
			}
			b.WriteString(line + "\n")
		}
		return b.String()
	}
	fmt.Fprintf(stdout, ".TH AUDITLOGIN 1 \"\" \"auditlogin %s\" \"User Commands\"\n", Version())
	fmt.Fprint(stdout, ".SH NAME\nauditlogin \\- ship MySQL/MariaDB login audit events to Kafka and Elasticsearch\n")
	fmt.Fprint(stdout, ".SH SYNOPSIS\n.nf\n"+esc(strings.TrimPrefix(usage, "auditlogin ships MySQL/MariaDB login audit events.\n\n"))+".fi\n")
	fmt.Fprint(stdout, ".SH COMMANDS\n")
	for _, c := range subcommands {
		var out strings.Builder
		switch c {
		case "completion":
			out.WriteString(completionUsage)
		case "version":
			out.WriteString("usage: auditlogin version\n\nPrints the version.\n")
		default:
			run([]string{c, "--help"}, strings.NewReader(""), &out, io.Discard)
		}
		fmt.Fprintf(stdout, ".SS %s\n.nf\n%s.fi\n", c, esc(out.String()))
	}
	fmt.Fprint(stdout, ".SH FILES\n.nf\n/etc/auditlogin/auditlogin.yaml\n/var/lib/auditlogin/registry.json\n/var/lib/auditlogin/spool/\n.fi\n")
	fmt.Fprint(stdout, ".SH EXIT STATUS\n0: success; 1: the command ran and failed; 2: bad usage or configuration.\n")
	return exitOK
}
