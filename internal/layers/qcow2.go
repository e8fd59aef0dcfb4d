package layers

import (
	"encoding/binary"
	"fmt"
	"os"
)

// The layout of an empty qcow2 (version 3) overlay, as `qemu-img create
// -f qcow2 -b PARENT -F FORMAT` writes it: the header and its extensions
// in cluster 0, the refcount table in cluster 1, one refcount block in
// cluster 2, the L1 table in cluster 3; no data cluster yet.
const (
	clusterBits      = 16
	clusterSize      = 1 << clusterBits
	refcountTableOff = 1 * clusterSize
	refcountBlockOff = 2 * clusterSize
	l1TableOff       = 3 * clusterSize
	headerLength     = 112 // v3 with the compression type field
	extBackingFormat = 0xE2792ACA
)

// writeOverlay writes an empty qcow2 of size bytes over parent (format
// "raw" or "qcow2") into f, which is empty. Writing it here rather than
// running qemu-img saves a process per layer: a snapshot of a running
// workspace waits for two of them.
func writeOverlay(f *os.File, parent, format string, size int64) error {
	if len(parent) == 0 || len(parent) > 1023 {
		return fmt.Errorf("backing file name of %d bytes", len(parent))
	}
	l2Covers := int64(clusterSize) * (clusterSize / 8) // one L2 table maps 512 MiB
	l1Size := (size + l2Covers - 1) / l2Covers
	if l1Size > clusterSize/8 {
		return fmt.Errorf("a %d-byte layer needs more than one L1 cluster", size)
	}
	h := make([]byte, clusterSize)
	be := binary.BigEndian
	copy(h[0:], "QFI\xfb")
	be.PutUint32(h[4:], 3)
	// Extensions follow the header: the backing file's format, then the
	// end marker; the backing file name comes after them.
	ext := headerLength
	be.PutUint32(h[ext:], extBackingFormat)
	be.PutUint32(h[ext+4:], uint32(len(format)))
	copy(h[ext+8:], format)
	ext += 8 + (len(format)+7)/8*8
	ext += 8 // end of extensions: type 0, length 0
	if ext+len(parent) > clusterSize {
		return fmt.Errorf("backing file name too long")
	}
	copy(h[ext:], parent)
	be.PutUint64(h[8:], uint64(ext))          // backing_file_offset
	be.PutUint32(h[16:], uint32(len(parent))) // backing_file_size
	be.PutUint32(h[20:], clusterBits)
	be.PutUint64(h[24:], uint64(size))
	be.PutUint32(h[36:], uint32(l1Size))
	be.PutUint64(h[40:], l1TableOff)
	be.PutUint64(h[48:], refcountTableOff)
	be.PutUint32(h[56:], 1) // refcount_table_clusters
	be.PutUint32(h[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(h[100:], headerLength)
	if _, err := f.WriteAt(h, 0); err != nil {
		return err
	}
	var rt [8]byte
	be.PutUint64(rt[:], refcountBlockOff)
	if _, err := f.WriteAt(rt[:], refcountTableOff); err != nil {
		return err
	}
	var rb [8]byte // clusters 0 to 3 are in use once each
	for i := range 4 {
		be.PutUint16(rb[2*i:], 1)
	}
	if _, err := f.WriteAt(rb[:], refcountBlockOff); err != nil {
		return err
	}
	// The L1 table, all zeros: nothing allocated.
	if err := f.Truncate(l1TableOff + l1Size*8); err != nil {
		return err
	}
	// A record names the layer once it exists: it must survive the host.
	return f.Sync()
}
