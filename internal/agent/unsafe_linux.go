package agent

import "unsafe"

// unsafePointer is used to fill native-endian netlink structures.
func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }
