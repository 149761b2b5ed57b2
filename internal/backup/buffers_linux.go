package backup

import "syscall"

// allocArena maps anonymous memory: pages the kernel provides on first
// touch, invisible to the garbage collector. release gives the pages back
// to the kernel; the mapping stays, and reads zeros until written again.
func allocArena(n int) (arena []byte, release func()) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n), func() {}
	}
	return b, func() { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }
}

// growPipe enlarges a pipe's kernel buffer, so pg_dump keeps writing while
// the reader is briefly busy (hashing, or waiting for a CPU). Best effort:
// the default 64 KiB works, only with more wake-ups.
func growPipe(fd uintptr, size int) {
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETPIPE_SZ, uintptr(size))
}
