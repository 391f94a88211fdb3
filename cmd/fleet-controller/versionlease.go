package main

import (
	"context"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1ac "k8s.io/client-go/applyconfigurations/coordination/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/cmd/internal/version"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// versionRecorder records the running controller's build in the Lease
// fleetv1alpha1.ControllerVersionLease when this instance starts acting on the fleet (it
// needs leader election, so with several replicas the record is the leader's, the one whose
// version matters). `fleetctl version` reads it.
//
// Why a record the controller writes rather than the Deployment's image: the install pins
// the image by digest, which names no version; a Deployment says what should run, not what
// runs (a rollout in progress, a crash-looping new image); and a controller run outside the
// hub (the demo, the e2e specs, a hub admin's own process) has no Deployment at all. A Lease
// because leases in the hub namespace are what the controller may already write (leader
// election) and what Kubernetes itself uses for "this component is here" records (node and
// kube-apiserver identity leases); one write per start, nothing in steady state.
type versionRecorder struct {
	c         client.Client
	namespace string
}

// NeedLeaderElection: only the leader writes.
func (r *versionRecorder) NeedLeaderElection() bool { return true }

func (r *versionRecorder) Start(ctx context.Context) error {
	identity, err := os.Hostname()
	if err != nil {
		identity = "unknown"
	}
	identity = fmt.Sprintf("%s_%d", identity, os.Getpid())
	info := version.Get()
	now := metav1.NewMicroTime(time.Now())
	lease := coordinationv1ac.Lease(fleetv1alpha1.ControllerVersionLease, r.namespace).
		WithLabels(map[string]string{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}).
		WithAnnotations(map[string]string{
			fleetv1alpha1.AnnotationVersion:   info.Version,
			fleetv1alpha1.AnnotationGitCommit: info.GitCommit,
		}).
		WithSpec(coordinationv1ac.LeaseSpec().WithHolderIdentity(identity).WithAcquireTime(now).WithRenewTime(now))
	// A failed record must not stop the controller: it is information for people, retried a
	// few times for a hub that is briefly busy.
	for attempt := 0; attempt < 5; attempt++ {
		err = r.c.Apply(ctx, lease, client.FieldOwner(fleetv1alpha1.FieldManager), client.ForceOwnership)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	ctrl.Log.WithName("version").Error(err, "could not record the controller version", "lease", r.namespace+"/"+fleetv1alpha1.ControllerVersionLease)
	return nil
}
