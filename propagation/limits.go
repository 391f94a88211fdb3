package propagation

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// Limits bound what one Baseline may make the hub hold and apply. They keep every
// BaselineBinding's inventory bounded by construction — the inventory is what prune and
// clean-up rely on, so it is never cut; instead a Baseline that would own more objects in
// a member than Objects is refused there, and nothing of it is applied.
type Limits struct {
	// Objects is the most objects a Baseline may own in one member: its rendered documents,
	// and after the perNamespace fan-out what it applies into each member.
	Objects int
	// Bytes is the most its rendered documents may weigh, as JSON.
	Bytes int64
}

// Default limits, and the flags of fleet-controller that change them (named in messages,
// so that a person knows what to change).
const (
	DefaultMaxObjects = 1000
	DefaultMaxBytes   = 2 << 20
	flagMaxObjects    = "--max-baseline-objects"
	flagMaxBytes      = "--max-baseline-bytes"
)

func (l Limits) withDefaults() Limits {
	if l.Objects <= 0 {
		l.Objects = DefaultMaxObjects
	}
	if l.Bytes <= 0 {
		l.Bytes = DefaultMaxBytes
	}
	return l
}

// checkRendered refuses a Baseline whose rendered documents (before the fan-out) pass the
// limits; it returns nil when they fit.
func (l Limits) checkRendered(out *render.Rendered) *sourceError {
	docs := len(out.Resources) + len(out.PerNamespace)
	if docs > l.Objects {
		return tooLarge(fmt.Sprintf("the Baseline renders to %d objects (%d in resources, %d in perNamespace.resources), more than the hub allows (%s=%d)",
			docs, len(out.Resources), len(out.PerNamespace), flagMaxObjects, l.Objects))
	}
	var size int64
	for _, list := range [][]render.Document{out.Resources, out.PerNamespace} {
		for _, d := range list {
			b, err := json.Marshal(d.Object.Object)
			if err != nil {
				// Parsed from YAML, it marshals; if not, the apply would fail to send it anyway.
				continue
			}
			size += int64(len(b))
		}
	}
	if size > l.Bytes {
		return tooLarge(fmt.Sprintf("the Baseline renders to %s of objects (%d bytes as JSON), more than the hub allows (%s=%s)",
			quantity(size), size, flagMaxBytes, quantity(l.Bytes)))
	}
	return nil
}

// checkMember refuses the Baseline in one member when what it would own there passes the
// object limit: desired objects after the fan-out into namespaces, plus (when nothing is
// pruned) the objects that left the Baseline and stay its own. nil when it fits.
func (l Limits) checkMember(cluster string, resources, perNamespace, desired, kept int) error {
	if desired+kept <= l.Objects {
		return nil
	}
	what := fmt.Sprintf("%d objects", desired)
	if perNamespace > 0 {
		what = fmt.Sprintf("%d objects (%d once, %d in each of %d namespaces)", desired, resources, perNamespace, (desired-resources)/perNamespace)
	}
	if kept > 0 {
		what += fmt.Sprintf(" and keep %d that left it (nothing is pruned: spec.prune false or policy Inform/CreateOnly)", kept)
	}
	return fmt.Errorf("in cluster %q the Baseline would own %s, more than the hub allows (%s=%d); nothing was applied to this member",
		cluster, what, flagMaxObjects, l.Objects)
}

func tooLarge(msg string) *sourceError {
	return &sourceError{reason: fleetv1alpha1.ReasonBaselineTooLarge, msg: msg}
}

// quantity writes a byte count as a person reads it (2Mi, 1536Ki).
func quantity(n int64) string {
	return resource.NewQuantity(n, resource.BinarySI).String()
}
