// Package tmpfs mounts a small tmpfs for tests that need a disk that fills
// up (ENOSPC) for real. It needs root (CI runs as root); elsewhere the test
// is skipped, or fails when AUDITLOGIN_E2E=require.
package tmpfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory and unmounts it
// when the test ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "auditlogin-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0777", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		os.Remove(dir)
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root): %v %s", err, out)
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		exec.Command("umount", "-l", dir).Run()
		os.Remove(dir)
	})
	return dir
}

// Fill writes a file that takes all but keep bytes of the file system at
// dir, and returns a function that removes it.
func Fill(t testing.TB, dir string, keep int64) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break // full
		}
	}
	f.Close()
	fi, _ := os.Stat(path)
	os.Truncate(path, max(fi.Size()-keep, 0))
	return func() { os.Remove(path) }
}
