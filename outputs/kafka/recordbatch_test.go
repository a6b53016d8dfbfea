package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/auditlogin/auditlogin/outputs/outputtest"
)

// The record batch, read back with franz-go's protocol package: sizes,
// crc (CRC-32C from the attributes on), header fields, and each record's
// key, value, headers and offset delta, for every codec (records
// decompressed with the codec's reader), with and without headers (none is
// the default). It is the same when written twice.
func TestRecordBatchFormat(t *testing.T) {
	evs := outputtest.Events(300, "rb")
	idx := []int{}
	for i := 0; i < len(evs); i += 3 { // a request takes some of a batch
		idx = append(idx, i)
	}
	ts := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC).UnixMilli()
	for name, c := range Codecs {
		for _, headers := range [][]string{nil, {"id", "format", "hostname", "myhost"}} {
			t.Run(fmt.Sprint(name, headers), func(t *testing.T) {
				rb := &recordBatch{batch: evs, idx: idx, key: "id", headers: headers, hostname: "agent-1", ts: ts}
				if c != 0 {
					rb.codec = c.Codec()
				}
				var out, again bytes.Buffer
				if _, err := rb.WriteTo(&out); err != nil {
					t.Fatal(err)
				}
				rb.WriteTo(&again)
				if !bytes.Equal(out.Bytes(), again.Bytes()) {
					t.Fatal("written twice, the batch differs")
				}
				raw := out.Bytes()
				if size := binary.BigEndian.Uint32(raw); int(size) != len(raw)-4 {
					t.Fatalf("size field %d, %d bytes follow", size, len(raw)-4)
				}
				var b kmsg.RecordBatch
				if err := b.ReadFrom(raw[4:]); err != nil {
					t.Fatal(err)
				}
				if int(b.Length) != len(raw)-4-12 || b.Magic != 2 || b.PartitionLeaderEpoch != -1 || b.ProducerID != -1 ||
					b.ProducerEpoch != -1 || b.FirstSequence != -1 || int(b.NumRecords) != len(idx) || int(b.LastOffsetDelta) != len(idx)-1 ||
					b.FirstTimestamp != ts || b.MaxTimestamp != ts || int8(b.Attributes&7) != int8(c) {
					t.Fatalf("batch header %+v", b)
				}
				if crc := crc32.Checksum(raw[4+21:], crc32.MakeTable(crc32.Castagnoli)); uint32(b.CRC) != crc {
					t.Fatalf("crc field %x, the bytes' crc %x", uint32(b.CRC), crc)
				}
				records := b.Records
				if c != 0 {
					r := c.Codec().NewReader(bytes.NewReader(records))
					var err error
					if records, err = io.ReadAll(r); err != nil {
						t.Fatal(err)
					}
				}
				for n, i := range idx {
					var rec kmsg.Record
					if err := rec.ReadFrom(records); err != nil {
						t.Fatalf("record %d: %v", n, err)
					}
					ev := evs[i]
					if string(rec.Key) != ev.ID || string(rec.Value) != string(ev.Encoded) || int(rec.OffsetDelta) != n || rec.TimestampDelta64 != 0 {
						t.Fatalf("record %d: key %q value %q offset delta %d timestamp delta %d", n, rec.Key, rec.Value, rec.OffsetDelta, rec.TimestampDelta64)
					}
					var want []string
					if headers != nil {
						want = []string{"id", ev.ID, "format", ev.Format, "hostname", "agent-1", "myhost", ev.MyHost}
					}
					if len(rec.Headers) != len(want)/2 {
						t.Fatalf("record %d: headers %v", n, rec.Headers)
					}
					for h, kv := range rec.Headers {
						if kv.Key != want[2*h] || string(kv.Value) != want[2*h+1] {
							t.Fatalf("record %d: header %d is %s=%s, want %s=%s", n, h, kv.Key, kv.Value, want[2*h], want[2*h+1])
						}
					}
					records = records[rec.Length+int32(varintLen(int64(rec.Length))):]
				}
				if len(records) != 0 {
					t.Fatalf("%d bytes after the last record", len(records))
				}
			})
		}
	}
}

func varintLen(v int64) int { return len(binary.AppendVarint(nil, v)) }
