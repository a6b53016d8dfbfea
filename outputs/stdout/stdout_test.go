package stdout

import (
	"bytes"
	"testing"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

func TestConformance(t *testing.T) {
	var buf *bytes.Buffer
	outputtest.Run(t, outputtest.Harness{
		New: func(t *testing.T) auditlogin.Output {
			buf = &bytes.Buffer{}
			return New(buf)
		},
		ReadBack: func(t *testing.T, want int) [][]byte {
			var out [][]byte
			for _, l := range bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")) {
				if len(l) > 0 {
					out = append(out, l)
				}
			}
			return out
		},
	})
}
