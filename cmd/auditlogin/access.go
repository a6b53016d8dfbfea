package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// canReadCmd is the hidden subcommand check runs as the service user: it
// opens each file named on its command line and prints, per file, "ok" or
// the error.
const canReadCmd = "__can-read"

func cmdCanRead(args []string, stdout io.Writer) int {
	for _, p := range args {
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintf(stdout, "%s\t%v\n", p, err)
			continue
		}
		buf := make([]byte, 1)
		if _, err := f.Read(buf); err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stdout, "%s\t%v\n", p, err)
		} else {
			fmt.Fprintf(stdout, "%s\tok\n", p)
		}
		f.Close()
	}
	return exitOK
}

// readable checks that each file can be opened and read: by this process,
// or, with as set, by that user (and its groups), through a child process
// running with its credentials (which needs root). It returns a problem per
// file that cannot be read.
func readable(files []string, as string) ([]string, error) {
	if as == "" {
		var out strings.Builder
		cmdCanRead(files, &out)
		return problems(out.String()), nil
	}
	u, err := user.Lookup(as)
	if err != nil {
		return nil, fmt.Errorf("--user %s: %w", as, err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("--user %s: checking access as another user needs root", as)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	abs := make([]string, len(files))
	for i, f := range files {
		abs[i], _ = filepath.Abs(f)
	}
	cmd := exec.Command(self, append([]string{canReadCmd}, abs...)...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("--user %s: running the access check: %w", as, err)
	}
	return problems(string(out)), nil
}

func problems(report string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(report), "\n") {
		path, res, ok := strings.Cut(l, "\t")
		if ok && res != "ok" {
			out = append(out, path+": "+res)
		}
	}
	return out
}
