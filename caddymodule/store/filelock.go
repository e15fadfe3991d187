package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// One process owns an SQLite store.
//
// The embedded store is meant for one Caddy: its recovery after a crash
// (in-progress records become unknown at once, running callback attempts
// are retried at once) assumes that whatever was in progress when the file
// was opened belongs to a process that is gone. The file's lock makes that
// true: Open takes an exclusive, non-blocking flock on "<file>.lock" (the
// kernel drops it when the process dies, kill -9 included) and writes the
// owner's pid and command line into it, so a second process is refused at
// once with the name of the file and of its owner instead of sharing it.
//
// Inside one process the lock is shared: a reload, a test or the doctor
// may open the file again while the first handle is open. Only the open
// that took the lock (OwnsFile) recovers.

// ErrInUse is returned by Open when another process holds the SQLite file.
var ErrInUse = errors.New("the store file is in use by another process")

// fileLock is one process's hold on a store file.
type fileLock struct {
	f    *os.File
	refs int
}

var (
	fileLocksMu sync.Mutex
	fileLocks   = map[string]*fileLock{}
)

// lockPath is the lock file of an SQLite store file.
func lockPath(path string) string { return path + ".lock" }

// acquireFileLock takes the process's hold on path. first reports that
// this call took the lock (no other handle of this process had it).
func acquireFileLock(path string) (release func(), first bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	fileLocksMu.Lock()
	defer fileLocksMu.Unlock()
	l := fileLocks[abs]
	if l == nil {
		f, err := lockFile(abs)
		if err != nil {
			return nil, false, err
		}
		l = &fileLock{f: f}
		fileLocks[abs] = l
		first = true
	}
	l.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			fileLocksMu.Lock()
			defer fileLocksMu.Unlock()
			if l.refs--; l.refs == 0 {
				delete(fileLocks, abs)
				unlockFile(l.f)
			}
		})
	}, first, nil
}

// lockFile opens and locks the lock file of the store file path, and
// writes this process's identity into it.
func lockFile(path string) (*os.File, error) {
	lp := lockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: opening its lock file: %w", path, err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite store %s: locking %s: %w", path, lp, err)
	}
	if !locked {
		owner := readOwner(f)
		f.Close()
		if owner == "" {
			owner = "owner unknown"
		}
		return nil, fmt.Errorf("sqlite store %s: %w (%s): only one Caddy may use an embedded store; stop the other process or configure another file (several instances need the postgres store)", path, ErrInUse, owner)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d (%s) since %s\n", os.Getpid(), commandLine(), time.Now().UTC().Format(time.RFC3339))
	}
	return f, nil
}

// readOwner is what the owner wrote into the lock file, on one line.
func readOwner(f *os.File) string {
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	return strings.TrimSpace(strings.SplitN(string(b[:n]), "\n", 2)[0])
}

// commandLine is this process's program name and first arguments, bounded.
func commandLine() string {
	args := os.Args
	if len(args) == 0 {
		return "pid " + strconv.Itoa(os.Getpid())
	}
	s := filepath.Base(args[0])
	if len(args) > 1 {
		s += " " + strings.Join(args[1:], " ")
	}
	if r := []rune(s); len(r) > 120 {
		s = string(r[:119]) + "…"
	}
	return s
}

func unlockFile(f *os.File) {
	// Closing the descriptor drops the flock; the file stays (removing it
	// would race with a process locking it right then).
	_ = f.Truncate(0)
	_ = f.Close()
}
