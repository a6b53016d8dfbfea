package kafka

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"

	"github.com/segmentio/kafka-go/compress"

	"github.com/auditlogin/auditlogin"
)

// recordBatch is the events of one produce request as a Kafka record batch
// (message format v2, Kafka 0.11 and later), preceded by its size as the
// produce request holds it. The client writes it into its request buffer
// through WriteTo (kafka-go's own encoder took each record through a
// reader, a byte at a time for its varints: 15 % of the agent's CPU with
// the default config). It is written again, the same, if the client writes
// the request again.
type recordBatch struct {
	batch    []*auditlogin.Event
	idx      []int
	key      string
	headers  []string // Config.Headers
	hostname string
	ts       int64 // milliseconds: the request's time, every record's
	codec    compress.Codec

	rd *bytes.Reader // Read's copy
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchHeaderSize: base offset (8), batch length (4), partition leader
// epoch (4), magic (1), crc (4), then what the crc covers: attributes (2),
// last offset delta (4), first and max timestamps (8, 8), producer id (8),
// producer epoch (2), base sequence (4), record count (4).
const batchHeaderSize = 8 + 4 + 4 + 1 + 4 + 40

// header returns the batch's header for records of n bytes with the given
// crc field.
func (b *recordBatch) header(n int, crc uint32) []byte {
	h := make([]byte, 4, 4+batchHeaderSize)
	binary.BigEndian.PutUint32(h, uint32(batchHeaderSize+n)) // the records field's size
	h = binary.BigEndian.AppendUint64(h, 0)                  // base offset
	h = binary.BigEndian.AppendUint32(h, uint32(batchHeaderSize-12+n))
	h = binary.BigEndian.AppendUint32(h, 0xffffffff) // partition leader epoch: -1
	h = append(h, 2)                                 // magic
	h = binary.BigEndian.AppendUint32(h, crc)
	return append(h, b.covered()...)
}

// covered is the header's part after the crc, which the crc covers.
func (b *recordBatch) covered() []byte {
	var attrs uint16
	if b.codec != nil {
		attrs = uint16(b.codec.Code())
	}
	h := make([]byte, 0, 40)
	h = binary.BigEndian.AppendUint16(h, attrs)
	h = binary.BigEndian.AppendUint32(h, uint32(len(b.idx)-1)) // last offset delta
	h = binary.BigEndian.AppendUint64(h, uint64(b.ts))         // first timestamp
	h = binary.BigEndian.AppendUint64(h, uint64(b.ts))         // max timestamp
	h = binary.BigEndian.AppendUint64(h, 0xffffffffffffffff)   // producer id: -1
	h = binary.BigEndian.AppendUint16(h, 0xffff)               // producer epoch: -1
	h = binary.BigEndian.AppendUint32(h, 0xffffffff)           // base sequence: -1
	return binary.BigEndian.AppendUint32(h, uint32(len(b.idx)))
}

// record calls fn with the parts of the i-th record: what comes before its
// value, the value, and its headers (head and tail are in buf, reused).
func (b *recordBatch) record(i int, buf []byte, fn func(head, value, tail []byte)) []byte {
	ev := b.batch[b.idx[i]]
	key, _ := ev.Field(b.key)
	value := ev.Encoded
	buf = buf[:0]
	buf = binary.AppendVarint(buf, int64(len(b.headers)))
	for _, h := range b.headers {
		buf = appendVarBytes(buf, h)
		buf = appendVarBytes(buf, headerValue(ev, h, b.hostname))
	}
	tail := len(buf)
	buf = append(buf, 0)              // attributes
	buf = binary.AppendVarint(buf, 0) // timestamp delta
	buf = binary.AppendVarint(buf, int64(i))
	buf = appendVarBytes(buf, key)
	buf = binary.AppendVarint(buf, int64(len(value)))
	rest := len(buf) + len(value) // the record after its length: buf[tail:], the value, buf[:tail]
	head := len(buf)
	buf = binary.AppendVarint(buf, int64(rest))
	buf = append(buf, buf[tail:head]...)
	fn(buf[head:], value, buf[:tail])
	return buf
}

// headerValue is the value of the header named h (a Config.Headers name).
func headerValue(ev *auditlogin.Event, h, hostname string) string {
	if h == HostnameHeader {
		return hostname
	}
	v, _ := ev.Field(h)
	return v
}

// appendVarBytes appends s with its length as a zigzag varint.
func appendVarBytes(buf []byte, s string) []byte {
	buf = binary.AppendVarint(buf, int64(len(s)))
	return append(buf, s...)
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// WriteTo writes the size, the header and the records to w.
func (b *recordBatch) WriteTo(w io.Writer) (int64, error) {
	// The records are encoded into one buffer first: the crc and the size
	// come before them, and a crc over one long run of bytes is several
	// times faster than over each record's three parts.
	body := bodyPool.Get().(*bytes.Buffer)
	defer bodyPool.Put(body)
	body.Reset()
	var rw io.Writer = body
	var cw io.WriteCloser
	if b.codec != nil {
		cw = b.codec.NewWriter(body)
		rw = cw
	}
	var err error
	buf := make([]byte, 0, 256)
	for i := 0; i < len(b.idx) && err == nil; i++ {
		buf = b.record(i, buf, func(head, value, tail []byte) {
			for _, p := range [3][]byte{head, value, tail} {
				if err == nil {
					_, err = rw.Write(p)
				}
			}
		})
	}
	if err == nil && cw != nil {
		err = cw.Close()
	}
	if err != nil {
		return 0, err
	}
	crc := crc32.Update(crc32.Update(0, castagnoli, b.covered()), castagnoli, body.Bytes())
	n, err := w.Write(b.header(body.Len(), crc))
	if err != nil {
		return int64(n), err
	}
	m, err := w.Write(body.Bytes())
	return int64(n + m), err
}

// Read is there for io.Reader (the client takes the batch as one, and
// uses WriteTo): it encodes the batch into memory once and reads from it.
func (b *recordBatch) Read(p []byte) (int, error) {
	if b.rd == nil {
		var buf bytes.Buffer
		if _, err := b.WriteTo(&buf); err != nil {
			return 0, err
		}
		b.rd = bytes.NewReader(buf.Bytes())
	}
	return b.rd.Read(p)
}
