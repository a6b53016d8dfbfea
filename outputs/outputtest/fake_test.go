package outputtest

import (
	"bytes"
	"testing"

	"github.com/auditlogin/auditlogin"
)

func TestFakeConformance(t *testing.T) {
	var f *Fake
	Run(t, Harness{
		New: func(t *testing.T) auditlogin.Output { f = NewFake("fake"); return f },
		ReadBack: func(t *testing.T, want int) [][]byte {
			var out [][]byte
			for _, ev := range f.Delivered() {
				out = append(out, bytes.Clone(ev.Encoded))
			}
			return out
		},
	})
}
