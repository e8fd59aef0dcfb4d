package engine

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// The counter sees every member of a tar stream however it is split, and
// does not count PAX or GNU long-name headers as members.
func TestTarCounter(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := []string{"a", "dir/", strings.Repeat("long/", 40) + "name", "big"}
	for _, n := range names {
		size := int64(3)
		if n == "big" {
			size = 70000
		}
		typ := byte(tar.TypeReg)
		if strings.HasSuffix(n, "/") {
			typ, size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: typ, Size: size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write(bytes.Repeat([]byte("x"), int(size)))
	}
	tw.Close()
	for _, split := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
	} {
		var seen []int64
		var end int64 = -1
		c := &tarCounter{r: split(bytes.NewReader(buf.Bytes())), onEntry: func(n int64) { seen = append(seen, n) }, onEnd: func(n int64) { end = n }}
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatal(err)
		}
		if len(seen) != len(names) || end != int64(len(names)) {
			t.Errorf("seen %v, end %d; want %d members", seen, end, len(names))
		}
	}
}
