//go:build !unix

package store

import "os"

// tryLock: no advisory lock on this platform; the store is not guarded.
func tryLock(*os.File) (bool, error) { return true, nil }
