package status

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Events wraps a controller's event recorder so that every note fits the API server's limit
// (MaxNote): the recorder sends events asynchronously, and one whose note is too long is
// refused and only logged — the warning a person was to read would be lost without a trace.
func Events(r recorder.EventRecorder) recorder.EventRecorder { return cappedNotes{r} }

type cappedNotes struct{ recorder.EventRecorder }

func (c cappedNotes) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	c.EventRecorder.Eventf(regarding, related, eventtype, reason, action, "%s", Truncate(fmt.Sprintf(note, args...), MaxNote))
}

func (c cappedNotes) AnnotatedEventf(regarding, related runtime.Object, annotations map[string]string, eventtype, reason, action, note string, args ...any) {
	c.EventRecorder.AnnotatedEventf(regarding, related, annotations, eventtype, reason, action, "%s", Truncate(fmt.Sprintf(note, args...), MaxNote))
}

// Transition events: a controller reports a change of state once, when it happens, and not
// on every reconcile that finds the state unchanged (a steady fleet sends no events). The
// Patcher knows both states — the snapshot it took and the status it wrote — so it sends
// them, and only after the write succeeded: a reconcile whose write fails (a conflict on a
// stale read, say) sends nothing, and its retry finds the same change and reports it then.

// EventFor decides the event for one condition that changed between the snapshot and the
// written status (its status, or its reason within the same status): the event type
// (corev1.EventTypeNormal or Warning), action and note, or an empty type for none; an empty
// note is the condition's message. obj is the object as written. The event's reason is the
// condition's.
type EventFor func(obj Object, changed metav1.Condition) (eventtype, action, note string)

// WithEvents makes Patch send, through rec, the events decide names for the conditions
// that changed. Events regard the reconciled object, or regarding when it is not nil (a
// BaselineBinding's events regard its Baseline, so that `kubectl describe baseline` shows
// them; the binding is then the related object).
func WithEvents(rec recorder.EventRecorder, regarding runtime.Object, decide EventFor) Option {
	return func(p *Patcher) { p.events, p.regarding, p.decide = rec, regarding, decide }
}

// Changed lists the conditions of after that are new in it or differ from before in status
// or reason, in after's order.
func Changed(before, after []metav1.Condition) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range after {
		old := meta.FindStatusCondition(before, c.Type)
		if old == nil || old.Status != c.Status || old.Reason != c.Reason {
			out = append(out, c)
		}
	}
	return out
}

// sendTransitions sends the events for the changes from the snapshot to obj, just written.
func (p *Patcher) sendTransitions(obj Object) {
	if p.events == nil {
		return
	}
	regarding, related := runtime.Object(obj), runtime.Object(nil)
	if p.regarding != nil {
		regarding, related = p.regarding, obj
	}
	for _, c := range Changed(p.before.GetConditions(), obj.GetConditions()) {
		state, key := string(c.Status)+"/"+c.Reason, "condition/"+c.Type
		if last, ok := Recall(obj.GetUID(), key); ok && last == state {
			continue // written and reported already; this reconcile read a stale copy
		}
		Remember(obj.GetUID(), key, state)
		if typ, action, note := p.decide(obj, c); typ != "" {
			if note == "" {
				note = c.Message
			}
			p.events.Eventf(regarding, related, typ, c.Reason, action, "%s", note)
		}
	}
}

// Transition memory. A reconcile may read its object from a cache that has not seen the
// status the previous reconcile wrote a moment ago: compared with that stale copy, the same
// change would be reported twice. So the Patcher remembers, per object UID and condition
// type, the status and reason it last wrote, and reports a change only against that. The
// memory is bounded (a full one starts over, at the cost of at most one repeated event per
// object) and lives as long as the process: after a restart the written status is all there
// is, and it is fresh.
var memory = newTransitionMemory(50000)

type memoryKey struct {
	uid types.UID
	key string
}

type transitionMemory struct {
	mu    sync.Mutex
	limit int
	m     map[memoryKey]string
}

func newTransitionMemory(limit int) *transitionMemory {
	return &transitionMemory{limit: limit, m: map[memoryKey]string{}}
}

// Recall returns what was last remembered for key of the object uid.
func Recall(uid types.UID, key string) (string, bool) {
	memory.mu.Lock()
	defer memory.mu.Unlock()
	v, ok := memory.m[memoryKey{uid, key}]
	return v, ok
}

// Remember records value for key of the object uid (see Recall): what a controller last
// reported, for state that a stale read of the object would show older.
func Remember(uid types.UID, key, value string) {
	memory.mu.Lock()
	defer memory.mu.Unlock()
	if len(memory.m) >= memory.limit {
		memory.m = map[memoryKey]string{}
	}
	memory.m[memoryKey{uid, key}] = value
}
