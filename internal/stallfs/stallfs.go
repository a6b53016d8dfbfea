// Package stallfs mounts, for tests, a directory through FUSE whose writes
// can be held: a file system that stops accepting writes, as a hung network
// mount does, with write(2) blocking in the kernel for real. It needs root
// and /dev/fuse (CI has both); elsewhere the test is skipped, or fails when
// AUDITLOGIN_E2E=require.
package stallfs

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted stallfs.
type FS struct {
	// Dir is the mount point; files written there land in Backing.
	Dir, Backing string

	mu      sync.Mutex
	release chan struct{} // closed when writes may go on; nil: not stalled
	held    atomic.Int64  // writes waiting now
	server  *fuse.Server
}

// Mount mounts a new stallfs (world-writable, so that another user's
// process such as mysqld can write) and unmounts it when the test ends.
func Mount(t testing.TB) *FS {
	t.Helper()
	skip := func(msg string) {
		if os.Getenv("AUDITLOGIN_E2E") == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		skip("stallfs needs root to mount FUSE")
	}
	s := &FS{}
	var err error
	if s.Backing, err = os.MkdirTemp("", "auditlogin-stallfs-data-"); err != nil {
		t.Fatal(err)
	}
	if s.Dir, err = os.MkdirTemp("", "auditlogin-stallfs-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(s.Backing, 0o777)
	os.Chmod(s.Dir, 0o777)
	var st syscall.Stat_t
	if err := syscall.Stat(s.Backing, &st); err != nil {
		t.Fatal(err)
	}
	root := &fs.LoopbackRoot{Path: s.Backing, Dev: uint64(st.Dev)}
	root.NewNode = func(rd *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: rd}, s: s}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	s.server, err = fs.Mount(s.Dir, root.RootNode, &fs.Options{MountOptions: fuse.MountOptions{
		AllowOther: true, DirectMount: true, FsName: "stallfs", Name: "stallfs",
	}})
	if err != nil {
		os.Remove(s.Dir)
		os.RemoveAll(s.Backing)
		skip("cannot mount FUSE (needs root and /dev/fuse): " + err.Error())
	}
	t.Cleanup(func() {
		s.Resume()
		if s.server.Unmount() != nil {
			syscall.Unmount(s.Dir, syscall.MNT_DETACH)
		}
		os.Remove(s.Dir)
		os.RemoveAll(s.Backing)
	})
	return s
}

// Stall holds every write from now on until Resume; a write held is
// interrupted only by a signal to the writer (then it fails with EINTR).
func (s *FS) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		s.release = make(chan struct{})
	}
}

// Resume lets held and new writes go on.
func (s *FS) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
}

// Held is how many writes are being held now.
func (s *FS) Held() int64 { return s.held.Load() }

// WaitHeld waits up to d until at least n writes are held.
func (s *FS) WaitHeld(n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for s.held.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// wait blocks while writes are stalled; false if the kernel interrupted it.
func (s *FS) wait(ctx context.Context) bool {
	s.mu.Lock()
	rel := s.release
	s.mu.Unlock()
	if rel == nil {
		return true
	}
	s.held.Add(1)
	defer s.held.Add(-1)
	select {
	case <-rel:
		return true
	case <-ctx.Done():
		return false
	}
}

type node struct {
	fs.LoopbackNode
	s *FS
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return fh, fl, errno
	}
	return n.wrap(fh), fl, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return in, fh, fl, errno
	}
	return in, n.wrap(fh), fl, 0
}

func (n *node) wrap(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return &file{LoopbackFile: lf, s: n.s}
	}
	return fh
}

// file is a loopback file whose writes wait while the file system is stalled.
type file struct {
	*fs.LoopbackFile
	s *FS
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !f.s.wait(ctx) {
		return 0, syscall.EINTR
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Writev(ctx context.Context, iov [][]byte, off int64) (uint32, syscall.Errno) {
	if !f.s.wait(ctx) {
		return 0, syscall.EINTR
	}
	return f.LoopbackFile.Writev(ctx, iov, off)
}

// PassthroughFd says no: a passthrough file would be written by the kernel
// directly, never asking this file system (and never held).
func (f *file) PassthroughFd() (int, bool) { return -1, false }
