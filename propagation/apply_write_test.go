package propagation

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
)

func TestHowToWrite(t *testing.T) {
	mine := plan.Object{Placement: plan.Mine, UID: "u1"}
	rec := fleetv1alpha1.InventoryEntry{UID: "u1", ResourceVersion: "7", Hash: "h1"}
	for _, tc := range []struct {
		name   string
		o      plan.Object
		liveRV string
		rec    fleetv1alpha1.InventoryEntry
		ok     bool
		hash   string
		want   write
	}{
		{name: "missing is created without a diff", o: plan.Object{Placement: plan.Missing}, want: writeCreate},
		{name: "unchanged since the last apply is skipped", o: mine, liveRV: "7", rec: rec, ok: true, hash: "h1", want: writeSkip},
		{name: "a changed Baseline is applied without a diff", o: mine, liveRV: "7", rec: rec, ok: true, hash: "h2", want: writeUpdate},
		{name: "a member change is diffed", o: mine, liveRV: "8", rec: rec, ok: true, hash: "h1", want: writeCheck},
		{name: "a member change and a Baseline change are diffed", o: mine, liveRV: "8", rec: rec, ok: true, hash: "h2", want: writeCheck},
		{name: "nothing recorded is diffed", o: mine, liveRV: "7", hash: "h1", want: writeCheck},
		{name: "a record without resourceVersion is diffed", o: mine, liveRV: "7", rec: fleetv1alpha1.InventoryEntry{UID: "u1", Hash: "h1"}, ok: true, hash: "h1", want: writeCheck},
		{name: "another object of the same name is diffed", o: plan.Object{Placement: plan.Mine, UID: types.UID("u2")}, liveRV: "7", rec: rec, ok: true, hash: "h1", want: writeCheck},
		{name: "an adopted object is diffed", o: plan.Object{Placement: plan.Adopt, UID: "u1"}, liveRV: "7", rec: rec, ok: true, hash: "h1", want: writeCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := howToWrite(tc.o, tc.liveRV, tc.rec, tc.ok, tc.hash); got != tc.want {
				t.Errorf("howToWrite = %s, want %s", got, tc.want)
			}
		})
	}
}
