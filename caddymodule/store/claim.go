package store

import (
	"context"
	"sync/atomic"
)

// Claim is one caller's write waiting for a transaction it shares with
// other callers (the group committer here, the callback enqueuer in the
// delivery package). It settles who decides the write's fate once the
// caller's context ends: the group, if it has taken the write (the caller
// then waits for the commit's outcome), or the caller, which gives up and
// the group then skips the write. Either way the caller's answer is what
// happened on disk.
type Claim struct {
	state atomic.Int32
	done  chan struct{}
}

const (
	claimQueued int32 = iota
	claimTaken
	claimAbandoned
)

// NewClaim returns a queued claim.
func NewClaim() Claim { return Claim{done: make(chan struct{})} }

// Take is the group's side: true if the caller still waits, and from now
// on waits for Settle whatever its context does.
func (c *Claim) Take() bool { return c.state.CompareAndSwap(claimQueued, claimTaken) }

// Settle tells the caller that its answer is ready. Only the group that
// took the claim calls it, once.
func (c *Claim) Settle() { close(c.done) }

// Wait is the caller's side: nil once the answer is ready, or, if ctx
// ends before the group took the write, ctx's error wrapped in
// ErrUnavailable — and the write will never run.
func (c *Claim) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		if c.state.CompareAndSwap(claimQueued, claimAbandoned) {
			return unavailable(ctx.Err())
		}
		<-c.done
		return nil
	}
}
