package status_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-dev/flotilla/internal/status"
)

func TestChanged(t *testing.T) {
	cond := func(typ string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg}
	}
	connected := cond("Connected", metav1.ConditionTrue, "Connected", "ok")
	for _, tc := range []struct {
		name          string
		before, after []metav1.Condition
		wantTypes     []string
	}{
		{name: "nothing changed", before: []metav1.Condition{connected}, after: []metav1.Condition{connected}},
		{name: "only the message changed: no transition",
			before: []metav1.Condition{connected}, after: []metav1.Condition{cond("Connected", metav1.ConditionTrue, "Connected", "3 nodes")}},
		{name: "a new condition", after: []metav1.Condition{connected}, wantTypes: []string{"Connected"}},
		{name: "status changed", before: []metav1.Condition{connected},
			after: []metav1.Condition{cond("Connected", metav1.ConditionFalse, "ProbeTimeout", "")}, wantTypes: []string{"Connected"}},
		{name: "reason changed within a status",
			before: []metav1.Condition{cond("Connected", metav1.ConditionFalse, "ProbeTimeout", "")},
			after:  []metav1.Condition{cond("Connected", metav1.ConditionFalse, "Unauthorized", "")}, wantTypes: []string{"Connected"}},
		{name: "a removed condition is no transition of the written status", before: []metav1.Condition{connected}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range status.Changed(tc.before, tc.after) {
				got = append(got, c.Type)
			}
			if diff := cmp.Diff(tc.wantTypes, got); diff != "" {
				t.Errorf("Changed types (-want +got):\n%s", diff)
			}
		})
	}
}
