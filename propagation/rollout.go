package propagation

import (
	"math"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// memberRollout is where one selected member stands in the rollout of a revision.
type memberRollout struct {
	Cluster string
	Canary  bool
	// Released: the binding's spec.revision is the new revision.
	Released bool
	// Done: the new revision is applied and healthy in the member.
	Done bool
	// Failed: applying the new revision failed in the member.
	Failed bool
}

// rolloutPlan is the decision for one reconcile of a Baseline.
type rolloutPlan struct {
	// Release lists the members whose binding gets the new revision now.
	Release []string
	// Stalled: more than maxFailures members failed; nothing more is released.
	Stalled bool
	// Failures counts members that failed the new revision.
	Failures int
	// Waiting counts members not yet released.
	Waiting int
}

// planRollout decides which members get the new revision next. It is pure so that every
// rule of a progressive rollout is a table test:
//   - canary members go first, and the rest wait until every canary is done;
//   - at most maxConcurrent members are in flight (released and neither done nor failed);
//   - more than maxFailures failures stop the rollout (members already updated keep the
//     new revision: nothing is rolled back);
//   - a paused Baseline releases nothing.
//
// Members are released in name order so that a rollout is predictable.
func planRollout(members []memberRollout, strategy *fleetv1alpha1.RolloutStrategy, paused bool) rolloutPlan {
	var plan rolloutPlan
	inFlight := 0
	canariesPending := false
	for _, m := range members {
		switch {
		case m.Failed:
			plan.Failures++
		case m.Released && !m.Done:
			inFlight++
		}
		if !m.Released {
			plan.Waiting++
		}
		if m.Canary && (!m.Released || !m.Done) {
			canariesPending = true
		}
	}
	maxFailures := 0
	if strategy != nil && strategy.MaxFailures != nil {
		maxFailures = int(*strategy.MaxFailures)
	}
	if plan.Failures > maxFailures {
		plan.Stalled = true
		return plan
	}
	if paused {
		return plan
	}

	budget := maxConcurrent(strategy, len(members)) - inFlight
	candidates := make([]memberRollout, 0, len(members))
	for _, m := range members {
		if m.Released {
			continue
		}
		if canariesPending && strategy != nil && strategy.Canary != nil && !m.Canary {
			continue // the canaries must finish first
		}
		candidates = append(candidates, m)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].Cluster < candidates[j].Cluster })
	for _, m := range candidates {
		if budget <= 0 {
			break
		}
		plan.Release = append(plan.Release, m.Cluster)
		budget--
	}
	return plan
}

// maxConcurrent resolves the strategy's count or percentage against the selected members;
// a percentage rounds up so that a rollout always makes progress. Unset means all at once.
func maxConcurrent(strategy *fleetv1alpha1.RolloutStrategy, selected int) int {
	if strategy == nil || strategy.MaxConcurrent == nil {
		return math.MaxInt
	}
	v := *strategy.MaxConcurrent
	if v.Type == intstr.Int {
		return max(1, v.IntValue())
	}
	pct, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	if err != nil || pct <= 0 {
		return 1 // the API rejects this; be safe rather than fast
	}
	return max(1, int(math.Ceil(float64(selected)*float64(pct)/100)))
}
