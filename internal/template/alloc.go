package template

import "syscall"

// allocated is the bytes a file occupies on disk (sparse files count only
// what is written); 0 if it is missing.
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// Allocated is allocated, for callers that report sizes.
func Allocated(path string) int64 { return allocated(path) }
