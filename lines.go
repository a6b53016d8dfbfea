package auditlogin

import (
	"bufio"
	"errors"
	"io"
)

// DefaultMaxLine is the longest line kept whole; longer lines are cut there
// and marked Truncated, and the rest up to the newline is skipped.
const DefaultMaxLine = 1 << 20

// ReadLines reads r to its end and calls fn for each line, with positions in
// the file path starting at offset 0. It is the one-shot reader (the parse and
// report commands, tests); the tailer follows live files itself. A last line
// without a newline is passed too when final is set (a file that is complete,
// as opposed to one still being written). Data is reused after fn returns.
// It returns the offset just past the last line passed to fn.
func ReadLines(r io.Reader, path string, maxLine int, final bool, fn func(Line)) (int64, error) {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		off   int64  // start of the current line
		kept  []byte // the current line's bytes, when it spans reads (at most maxLine)
		total int64  // bytes of the current line so far, newline excluded
		long  bool   // the current line spans several reads
	)
	deliver := func(body []byte, newline int64) {
		data := body
		if long {
			kept = appendCap(kept, body, maxLine)
			data = kept
		}
		total += int64(len(body))
		if len(data) > maxLine {
			data = data[:maxLine]
		}
		end := off + total + newline
		fn(Line{Data: data, Truncated: total > int64(maxLine), Pos: Position{Path: path, Offset: off, End: end}})
		off, kept, total, long = end, kept[:0], 0, false
	}
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			deliver(chunk[:len(chunk)-1], 1)
		case errors.Is(err, bufio.ErrBufferFull):
			kept = appendCap(kept, chunk, maxLine)
			total += int64(len(chunk))
			long = true
		case errors.Is(err, io.EOF):
			if final && (long || len(chunk) > 0) {
				deliver(chunk, 0)
			}
			return off, nil
		default:
			return off, err
		}
	}
}

func appendCap(dst, src []byte, max int) []byte {
	if room := max - len(dst); room < len(src) {
		if room <= 0 {
			return dst
		}
		src = src[:room]
	}
	return append(dst, src...)
}
