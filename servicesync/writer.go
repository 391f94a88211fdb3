package servicesync

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// writeMirror makes the mirror of in exist in target exactly as computed: it reads from
// the target's cache and writes only what differs. An object of a mirror's name that is
// not a mirror of this very source is never touched: that is a conflict, reported.
func (r *ExportReconciler) writeMirror(ctx context.Context, target string, in mirror.Source, res *mirror.Resolved) (wrote bool, conflict string, err error) {
	reader, err := r.Members.Reader(target)
	if err != nil {
		return false, "", err
	}
	writer, err := r.writerFor(target)
	if err != nil {
		return false, "", err
	}
	svc, eps, slices := mirror.Objects(in, res, target)
	src := in.Service

	// The Service first: its name is what a clash is about.
	existing := &corev1.Service{}
	switch err := reader.Get(ctx, client.ObjectKeyFromObject(svc), existing); {
	case apierrors.IsNotFound(err):
		if err := writer.Create(ctx, svc); err != nil {
			return wrote, "", fmt.Errorf("create Service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		wrote = true
	case err != nil:
		return false, "", err
	case !mirror.Owned(existing, in.Cluster, src.Namespace, src.Name):
		return false, fmt.Sprintf("Service %s/%s exists and is not a Flotilla mirror of %s/%s/%s; left untouched",
			svc.Namespace, svc.Name, in.Cluster, src.Namespace, src.Name), nil
	case mirror.NeedsUpdate(existing, svc):
		updated := existing.DeepCopy()
		mirror.Apply(updated, svc)
		if err := writer.Update(ctx, updated); err != nil {
			return wrote, "", fmt.Errorf("update Service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		wrote = true
	}

	if eps != nil {
		w, c, err := r.writeOwned(ctx, reader, writer, in, eps, &corev1.Endpoints{})
		if err != nil || c != "" {
			return wrote || w, c, err
		}
		wrote = wrote || w
	} else {
		// An ExternalName mirror has no Endpoints; drop ours from an earlier IP-based mode.
		old := &corev1.Endpoints{}
		err := reader.Get(ctx, client.ObjectKeyFromObject(svc), old)
		if err == nil && mirror.Owned(old, in.Cluster, src.Namespace, src.Name) {
			if err := writer.Delete(ctx, old); client.IgnoreNotFound(err) != nil {
				return wrote, "", err
			}
			wrote = true
		}
	}
	keep := map[string]bool{}
	for _, s := range slices {
		keep[s.Name] = true
		w, c, err := r.writeOwned(ctx, reader, writer, in, s, &discoveryv1.EndpointSlice{})
		if err != nil || c != "" {
			return wrote || w, c, err
		}
		wrote = wrote || w
	}
	// Slices this source no longer needs (fewer endpoints, a family gone).
	old := &discoveryv1.EndpointSliceList{}
	if err := reader.List(ctx, old, client.InNamespace(src.Namespace), client.MatchingLabels(ownerLabels(in.Cluster, src.Namespace, src.Name))); err != nil {
		return wrote, "", err
	}
	for i := range old.Items {
		if !keep[old.Items[i].Name] {
			if err := writer.Delete(ctx, &old.Items[i]); client.IgnoreNotFound(err) != nil {
				return wrote, "", err
			}
			wrote = true
		}
	}
	return wrote, "", nil
}

// writeOwned creates or updates one mirror object (Endpoints or EndpointSlice) in target.
func (r *ExportReconciler) writeOwned(ctx context.Context, reader client.Reader, writer client.Client, in mirror.Source,
	desired, existing client.Object) (bool, string, error) {
	src := in.Service
	err := reader.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case apierrors.IsNotFound(err):
		if err := writer.Create(ctx, desired); err != nil {
			return false, "", fmt.Errorf("create %T %s/%s: %w", desired, desired.GetNamespace(), desired.GetName(), err)
		}
		return true, "", nil
	case err != nil:
		return false, "", err
	case !mirror.Owned(existing, in.Cluster, src.Namespace, src.Name):
		return false, fmt.Sprintf("%T %s/%s exists and is not a Flotilla mirror of %s/%s/%s; left untouched",
			existing, desired.GetNamespace(), desired.GetName(), in.Cluster, src.Namespace, src.Name), nil
	case mirror.NeedsUpdate(existing, desired):
		updated := existing.DeepCopyObject().(client.Object)
		mirror.Apply(updated, desired)
		if err := writer.Update(ctx, updated); err != nil {
			return false, "", fmt.Errorf("update %T %s/%s: %w", desired, desired.GetNamespace(), desired.GetName(), err)
		}
		return true, "", nil
	}
	return false, "", nil
}

// removeMirrors deletes the mirrors of src from every connected member not in keep.
// Mirrors are found by their ownership labels only; a member that is not connected keeps
// its mirrors until it reconnects (its mirror watch then brings the source back here).
func (r *ExportReconciler) removeMirrors(ctx context.Context, src source, keep []string) error {
	keepSet := map[string]bool{}
	for _, k := range keep {
		keepSet[k] = true
	}
	var errs []error
	for _, t := range r.Members.Connected() {
		if keepSet[t] {
			continue
		}
		if err := r.removeFrom(ctx, t, src); err != nil {
			errs = append(errs, fmt.Errorf("remove mirrors of %s from cluster %q: %w", src, t, err))
		}
	}
	return errors.Join(errs...)
}

func (r *ExportReconciler) removeFrom(ctx context.Context, target string, src source) error {
	reader, err := r.Members.Reader(target)
	if err != nil {
		return nil // disconnected since Connected(): it keeps its mirrors for now
	}
	writer, err := r.writerFor(target)
	if err != nil {
		return nil
	}
	sel := client.MatchingLabels(ownerLabels(src.cluster, src.namespace, src.name))
	var objs []client.Object
	svcs := &corev1.ServiceList{}
	if err := reader.List(ctx, svcs, client.InNamespace(src.namespace), sel); err != nil {
		return err
	}
	for i := range svcs.Items {
		objs = append(objs, &svcs.Items[i])
	}
	eps := &corev1.EndpointsList{}
	if err := reader.List(ctx, eps, client.InNamespace(src.namespace), sel); err != nil {
		return err
	}
	for i := range eps.Items {
		objs = append(objs, &eps.Items[i])
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := reader.List(ctx, slices, client.InNamespace(src.namespace), sel); err != nil {
		return err
	}
	for i := range slices.Items {
		objs = append(objs, &slices.Items[i])
	}
	for _, o := range objs {
		if err := writer.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// markStale rewrites the mirror's endpoints in target as not ready (addresses kept).
func (r *ExportReconciler) markStale(ctx context.Context, target string, src source) error {
	reader, err := r.Members.Reader(target)
	if err != nil {
		return nil
	}
	writer, err := r.writerFor(target)
	if err != nil {
		return nil
	}
	sel := client.MatchingLabels(ownerLabels(src.cluster, src.namespace, src.name))
	eps := &corev1.EndpointsList{}
	if err := reader.List(ctx, eps, client.InNamespace(src.namespace), sel); err != nil {
		return err
	}
	for i := range eps.Items {
		e := eps.Items[i].DeepCopy()
		changed := false
		for j := range e.Subsets {
			if len(e.Subsets[j].Addresses) > 0 {
				e.Subsets[j].NotReadyAddresses = append(e.Subsets[j].NotReadyAddresses, e.Subsets[j].Addresses...)
				e.Subsets[j].Addresses = nil
				changed = true
			}
		}
		if changed {
			if err := writer.Update(ctx, e); err != nil {
				return err
			}
		}
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := reader.List(ctx, slices, client.InNamespace(src.namespace), sel); err != nil {
		return err
	}
	for i := range slices.Items {
		s := slices.Items[i].DeepCopy()
		changed := false
		for j := range s.Endpoints {
			c := &s.Endpoints[j].Conditions
			if c.Ready == nil || *c.Ready || c.Serving == nil || *c.Serving {
				f := false
				c.Ready, c.Serving = &f, &f
				changed = true
			}
		}
		if changed {
			if err := writer.Update(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

func ownerLabels(cluster, namespace, name string) map[string]string {
	return map[string]string{
		fleetv1alpha1.LabelSourceCluster:   cluster,
		fleetv1alpha1.LabelSourceNamespace: namespace,
		fleetv1alpha1.LabelSourceName:      name,
	}
}

// writerFor is the target's client, counting every write for the mirror-writes metric.
func (r *ExportReconciler) writerFor(target string) (client.Client, error) {
	c, err := r.Members.Client(target)
	if err != nil {
		return nil, err
	}
	return countingWriter{Client: c, cluster: target}, nil
}

// countingWriter counts the writes that succeed.
type countingWriter struct {
	client.Client
	cluster string
}

func (w countingWriter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return w.count(w.Client.Create(ctx, obj, opts...))
}

func (w countingWriter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return w.count(w.Client.Update(ctx, obj, opts...))
}

func (w countingWriter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return w.count(w.Client.Delete(ctx, obj, opts...))
}

func (w countingWriter) count(err error) error {
	if err == nil {
		mirrorWrites.WithLabelValues(w.cluster).Inc()
	}
	return err
}
