package tailer

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/auditlogin/auditlogin"
)

// DefaultFingerprintSize is how many leading bytes identify a file's content.
const DefaultFingerprintSize = 1024

func devIno(fi fs.FileInfo) (uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

// identify returns f's identity, fingerprinting its first min(size, fpSize)
// bytes. ok is false for an empty file: it has no content to tell it apart
// yet, so it is identified once its first bytes arrive.
func identify(f *os.File, fpSize int) (id auditlogin.FileID, size int64, ok bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return id, 0, false, err
	}
	size = fi.Size()
	if size == 0 {
		return id, 0, false, nil
	}
	n := int64(fpSize)
	if size < n {
		n = size
	}
	fp, err := fingerprint(f, int(n))
	if err != nil {
		return id, size, false, err
	}
	dev, ino := devIno(fi)
	return auditlogin.FileID{Dev: dev, Ino: ino, FPLen: int(n), FP: fp}, size, true, nil
}

// fingerprint hashes the first n bytes of f; "" when f is shorter.
func fingerprint(f *os.File, n int) (string, error) {
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil {
		if err == io.EOF {
			return "", nil
		}
		return "", err
	}
	return fingerprintOf(buf), nil
}

// fingerprintOf is the fingerprint of a file's first bytes.
func fingerprintOf(head []byte) string {
	sum := sha256.Sum256(head)
	return hex.EncodeToString(sum[:])
}
