package clusters

import (
	"context"
	"sync"
	"time"
)

// MemberSlots bounds how many reconciles work on one member at the same time, so that
// members which stop answering hold only a few of a controller's shared workers. A
// reconcile waits for a slot only briefly: a healthy member frees one within
// milliseconds, while the slots of a hung member stay taken until their calls time out,
// and the reconcile gives its worker back and comes again later instead of queueing
// behind those calls.
type MemberSlots struct {
	size int
	mu   sync.Mutex
	sems map[string]chan struct{}
}

// NewMemberSlots allows size concurrent reconciles per member (at least one).
func NewMemberSlots(size int) *MemberSlots {
	return &MemberSlots{size: max(size, 1), sems: map[string]chan struct{}{}}
}

// Acquire takes one of cluster's slots, waiting at most wait (or until ctx ends). ok is
// false when none came free; otherwise release must be called when the work is done.
func (s *MemberSlots) Acquire(ctx context.Context, cluster string, wait time.Duration) (release func(), ok bool) {
	s.mu.Lock()
	sem := s.sems[cluster]
	if sem == nil {
		sem = make(chan struct{}, s.size)
		s.sems[cluster] = sem
	}
	s.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { <-sem }) }
	select {
	case sem <- struct{}{}:
		return release, true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return release, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}
