package status

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
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
