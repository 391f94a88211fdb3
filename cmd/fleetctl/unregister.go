package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// deletionTimeout bounds the wait for a MemberCluster's finalizers (fleet-controller gives
// up on an unreachable member's clean-up after its --member-cleanup-timeout, two minutes by
// default); a variable so that tests of the timeout need not wait minutes.
var deletionTimeout = 3 * time.Minute

// unregisterOptions are the flags and argument of `fleetctl unregister`.
type unregisterOptions struct {
	name         string
	cleanup      bool
	member       memberFlags
	hubNamespace string
}

func newUnregisterCommand(hub *hubFlags) *cobra.Command {
	o := &unregisterOptions{}
	cmd := &cobra.Command{
		Use:   "unregister NAME [--cleanup --member-kubeconfig FILE]",
		Short: "Remove a member cluster from the hub and, with --cleanup, the hub's identity from the member",
		Long: `unregister deletes the MemberCluster NAME and waits until it is gone (fleet-controller
holds it while it removes what Flotilla wrote in the member, per each Baseline's
deletionPolicy, the mirrors of other members' Services in it and the mirrors of its
Services everywhere), prints what was removed (and what an unreachable member kept), then
deletes the hub's kubeconfig Secret for it if fleetctl created it. With --cleanup it also
removes from the member what 'fleetctl register' created there: the token Secret, the
ClusterRoleBinding, the ClusterRole and the ServiceAccount, and the namespace if nothing
else is left in it. Unregistering a cluster that is already gone succeeds.`,
		Example: `  fleetctl unregister eu-1
  fleetctl unregister eu-1 --cleanup --member-kubeconfig ~/.kube/eu-1.yaml`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeMembers(hub),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runUnregister(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), hub, o)
		},
	}
	cmd.Flags().BoolVar(&o.cleanup, "cleanup", false, "Also remove what register created in the member (needs --member-kubeconfig).")
	o.member.bind(cmd, "Kubeconfig with admin access to the member, for --cleanup.")
	cmd.Flags().StringVar(&o.hubNamespace, "hub-namespace", fleetv1alpha1.DefaultHubNamespace,
		"Hub namespace holding the member's kubeconfig Secret (used when the MemberCluster is already gone).")
	return cmd
}

func (o *unregisterOptions) validate() error {
	if err := validateClusterName(o.name); err != nil {
		return err
	}
	switch {
	case o.cleanup && o.member.kubeconfig == "":
		return errors.New("--cleanup needs --member-kubeconfig to reach the member")
	case !o.cleanup && (o.member.kubeconfig != "" || o.member.context != ""):
		return errors.New("--member-kubeconfig and --member-context are only used with --cleanup")
	}
	return nil
}

func runUnregister(ctx context.Context, out, errOut io.Writer, hub *hubFlags, o *unregisterOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	hubCfg, err := hub.restConfig()
	if err != nil {
		return err
	}
	hubClient, err := newClient(hubCfg, errOut)
	if err != nil {
		return err
	}
	// The member's credentials are checked before the hub is changed, so a typo in the path
	// does not leave a half-done unregistration.
	var access *memberAccess
	if o.cleanup {
		memberCfg, err := o.member.restConfig()
		if err != nil {
			return err
		}
		memberClient, err := newClient(memberCfg, errOut)
		if err != nil {
			return err
		}
		access = &memberAccess{c: memberClient, cfg: memberCfg, steps: memberSteps(out, o.name)}
	}

	hs := hubSteps(out)
	before, err := snapshotLeaving(ctx, hubClient, o.name)
	if err != nil {
		return err
	}
	secretRef, err := deleteMemberCluster(ctx, hubClient, hs, o.name, o.hubNamespace)
	if err != nil {
		return err
	}
	before.report(ctx, hubClient, hs, memberSteps(out, o.name))
	// The Secret goes only after the MemberCluster: fleet-controller needs the credentials
	// while its finalizer cleans up.
	if err := deleteKubeconfigSecret(ctx, hubClient, hs, secretRef); err != nil {
		return err
	}
	// The member last, for the same reason: until the MemberCluster is gone, the hub may
	// still be removing what it put into the member.
	if access != nil {
		if err := access.remove(ctx); err != nil {
			return fmt.Errorf("member %q: %w", o.name, err)
		}
	}
	fmt.Fprintf(out, "Unregistered %q.\n", o.name)
	return nil
}

// deleteMemberCluster deletes the MemberCluster and waits until it is gone. It returns the
// kubeconfig Secret to delete next: the one the MemberCluster pointed at, or, if it was
// already gone, the one register would have created.
func deleteMemberCluster(ctx context.Context, c client.Client, steps stepPrinter, name, hubNamespace string) (fleetv1alpha1.SecretKeyReference, error) {
	ref := fleetv1alpha1.SecretKeyReference{Namespace: hubNamespace, Name: kubeconfigSecretName(name)}
	mc := &fleetv1alpha1.MemberCluster{}
	switch err := c.Get(ctx, client.ObjectKey{Name: name}, mc); {
	case meta.IsNoMatchError(err):
		return ref, fmt.Errorf("hub: the Flotilla API %s is not installed on the hub: %w", fleetv1alpha1.GroupVersion, err)
	case apierrors.IsNotFound(err):
		steps.printf("membercluster %s not found (already unregistered)", name)
		return ref, nil
	case err != nil:
		return ref, fmt.Errorf("hub: get membercluster %s: %w", name, err)
	}
	// A MemberCluster of another source would be re-created by it at once.
	if src := mc.Labels[fleetv1alpha1.LabelRegistration]; src != "" && src != fleetv1alpha1.RegistrationFleetctl {
		return ref, fmt.Errorf("hub: membercluster %s was registered by %q, not fleetctl, and that source would re-create it: "+
			"remove its source instead (the Secret labelled %s, or the Cluster API Cluster)", name, src, fleetv1alpha1.LabelKubeconfig)
	}
	ref = mc.Spec.KubeconfigSecretRef
	if mc.DeletionTimestamp == nil {
		if err := c.Delete(ctx, mc); err != nil && !apierrors.IsNotFound(err) {
			return ref, fmt.Errorf("hub: delete membercluster %s: %w", name, err)
		}
	}
	var lastErr error
	// The reads use ctx, not the poll's deadline, so that the last one is not cut short and
	// mistaken for a failure; a failed read is retried, as one lost request should not fail
	// the command.
	gone := func(context.Context) (bool, error) {
		lastErr = c.Get(ctx, client.ObjectKey{Name: name}, mc)
		return apierrors.IsNotFound(lastErr), nil
	}
	if done, _ := gone(ctx); !done {
		if lastErr == nil {
			steps.printf("waiting for membercluster %s to be deleted (finalizers: %s)...", name, strings.Join(mc.Finalizers, ", "))
		}
		err := wait.PollUntilContextTimeout(ctx, pollInterval, deletionTimeout, true, gone)
		switch {
		case err != nil && ctx.Err() != nil:
			return ref, ctx.Err()
		case err != nil && lastErr != nil:
			return ref, fmt.Errorf("hub: wait for membercluster %s to be deleted: %w", name, lastErr)
		case err != nil:
			return ref, fmt.Errorf("hub: membercluster %s still exists after %s, held by finalizers %s: is fleet-controller running? "+
				"(its kubeconfig Secret is kept until it is gone)", name, deletionTimeout, strings.Join(mc.Finalizers, ", "))
		}
	}
	steps.printf("membercluster %s deleted", name)
	return ref, nil
}

// deleteKubeconfigSecret deletes the member's kubeconfig Secret if fleetctl created it.
func deleteKubeconfigSecret(ctx context.Context, c client.Client, steps stepPrinter, ref fleetv1alpha1.SecretKeyReference) error {
	secret := &corev1.Secret{}
	what := "secret " + ref.Namespace + "/" + ref.Name
	switch err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); {
	case apierrors.IsNotFound(err):
		steps.printf("%s not found", what)
		return nil
	case err != nil:
		return fmt.Errorf("hub: get %s: %w", what, err)
	case secret.Labels[fleetv1alpha1.LabelRegistration] != fleetv1alpha1.RegistrationFleetctl:
		steps.printf("%s left alone (not created by fleetctl)", what)
		return nil
	}
	if err := c.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("hub: delete %s: %w", what, err)
	}
	steps.printf("%s deleted", what)
	return nil
}
