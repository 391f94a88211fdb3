package servicesync

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// writeOutcome is what writing one export's mirrors into its targets found.
type writeOutcome struct {
	// mirrored are the targets holding a current mirror, sorted.
	mirrored []string
	// conflicts are the targets where an object Flotilla does not own is in the way.
	conflicts []fleetv1alpha1.MirrorConflict
	// deferred are the members whose part was put off (busy or not answering, see
	// memberWork): their mirrors stay as they are until the export comes back.
	deferred []string
	// wrote is true when any object was created, updated or deleted.
	wrote bool
	// err names every member a write failed in.
	err error
}

// mirrorPart is what one member's part of an export's sync found.
type mirrorPart struct {
	wrote    bool
	conflict string
}

// syncMirrors makes every writable member hold what it should of req's mirrors, in all
// members at once, each under memberWork: targets get the mirrors of in (writing only what
// differs) and lose mirror objects no longer wanted (slices, Endpoints of an ExternalName
// mirror); every other writable member loses them all. One member's failure or silence
// holds up neither the others nor the worker. The merged service of the namespace/name (fs,
// merged.go) is brought along in every member visited, the source's own included, where
// se (the ServiceExport's status) is written too.
func (r *ExportReconciler) syncMirrors(ctx context.Context, req exportRequest, writable, targets []string, in mirror.Source, res *mirror.Resolved,
	fs *fleetService, se *exportStatus) writeOutcome {
	keep := keepNames(in, res)
	hash := hashObjects(mirrorObjects(in, res))
	members := slices.Clone(writable)
	for _, t := range targets {
		if !slices.Contains(members, t) {
			members = append(members, t)
		}
	}
	r.written.keepOnly(req, targets)
	parts, deferred, err := onMembers(ctx, r.work, req, members, func(ctx context.Context, m string) (mirrorPart, error) {
		if !slices.Contains(targets, m) {
			return r.syncMerged(ctx, m, req, in, res, fs, se, nil)
		}
		wrote, conflict, err := r.writeMirror(ctx, m, req, in, res, hash)
		if err != nil {
			return mirrorPart{wrote: wrote}, fmt.Errorf("mirror %s into cluster %q: %w", req, m, err)
		}
		if conflict != "" {
			return mirrorPart{wrote: wrote, conflict: conflict}, nil
		}
		p, err := r.syncMerged(ctx, m, req, in, res, fs, se, keep)
		p.wrote = p.wrote || wrote
		return p, err
	})
	out := writeOutcome{deferred: deferred, err: err}
	for m, p := range parts {
		out.wrote = out.wrote || p.wrote
		switch {
		case !slices.Contains(targets, m):
		case p.conflict != "":
			out.conflicts = append(out.conflicts, fleetv1alpha1.MirrorConflict{Cluster: m, Message: p.conflict})
		default:
			out.mirrored = append(out.mirrored, m)
		}
	}
	sort.Strings(out.mirrored)
	sort.Strings(out.deferred)
	sort.Slice(out.conflicts, func(i, j int) bool { return out.conflicts[i].Cluster < out.conflicts[j].Cluster })
	return out
}

// writeMirror makes the mirror of in exist in target exactly as computed, writing only what
// differs. The Service goes first: its name is what a clash is about. When the target's
// member cache shows the objects at the versions this export last left them, with the same
// desired objects (hash), there is nothing to do and the target is not asked (readmemo.go).
// Otherwise Services and EndpointSlices are read from the member (the hub caches only their
// metadata), Endpoints from the member cache, which holds the ones Flotilla wrote.
func (r *ExportReconciler) writeMirror(ctx context.Context, target string, req exportRequest, in mirror.Source, res *mirror.Resolved,
	hash uint64) (wrote bool, conflict string, err error) {
	live, err := r.Members.Client(target)
	if err != nil {
		return false, "", err
	}
	cached, err := r.Members.Reader(target)
	if err != nil {
		return false, "", err
	}
	writer, err := r.writerFor(target)
	if err != nil {
		return false, "", err
	}
	// Objects are built per target: a write fills in the object it is given.
	objs := mirrorObjects(in, res)
	if r.written.current(ctx, req, target, hash, cached, objs) {
		return false, "", nil
	}
	r.written.forget(req, target) // until this sync has left every object as wanted
	versions := make([]string, 0, len(objs))
	for _, d := range objs {
		var w ownedWrite
		if _, endpoints := d.(*corev1.Endpoints); endpoints {
			w, err = r.writeOwned(ctx, cached, live, writer, req, d, cachedForm(d))
		} else {
			w, err = r.writeOwned(ctx, nil, live, writer, req, d, emptyOf(d))
		}
		wrote = wrote || w.wrote
		if err != nil || w.conflict != "" {
			return wrote, w.conflict, err
		}
		versions = append(versions, w.version)
	}
	r.written.put(req, target, hash, versions)
	return wrote, "", nil
}

// mirrorObjects are the mirror objects of in, the Service first.
func mirrorObjects(in mirror.Source, res *mirror.Resolved) []client.Object {
	svc, eps, slices := mirror.Objects(in, res)
	objs := []client.Object{svc}
	if eps != nil {
		objs = append(objs, eps)
	}
	for _, s := range slices {
		objs = append(objs, s)
	}
	return objs
}

// emptyOf is an empty object of d's type, for the live read of d.
func emptyOf(d client.Object) client.Object {
	return reflect.New(reflect.TypeOf(d).Elem()).Interface().(client.Object)
}

// ownedWrite is what writing one mirror object did: wrote it, or found in its place an
// object Flotilla does not own (conflict); version is the object's resourceVersion as the
// member answered.
type ownedWrite struct {
	wrote    bool
	conflict string
	version  string
}

// writeOwned creates or updates one mirror object. An object of that name that is not a
// mirror of this very source is never touched: that is a conflict, reported.
func (r *ExportReconciler) writeOwned(ctx context.Context, cached, live client.Reader, writer client.Client, req exportRequest,
	desired, existing client.Object) (ownedWrite, error) {
	kind := kindOf(desired)
	key := client.ObjectKeyFromObject(desired)
	reader := live
	if cached != nil {
		reader = cached
	}
	err := reader.Get(ctx, key, existing)
	if cached != nil && (apierrors.IsNotFound(err) || err == nil && mirror.NeedsUpdate(existing, desired)) {
		// A cache may not have seen this controller's last write yet: a write decided on
		// its word alone could repeat that write (and fail on a conflict), so the member
		// confirms it first. In the steady state the cache answers alone.
		err = live.Get(ctx, key, existing)
	}
	switch {
	case apierrors.IsNotFound(err):
		if err := writer.Create(ctx, desired); err != nil {
			return ownedWrite{}, fmt.Errorf("create %s %s/%s: %w", kind, desired.GetNamespace(), desired.GetName(), err)
		}
		return ownedWrite{wrote: true, version: desired.GetResourceVersion()}, nil
	case err != nil:
		return ownedWrite{}, fmt.Errorf("read %s %s/%s: %w", kind, desired.GetNamespace(), desired.GetName(), err)
	case !mirror.Owned(existing, req.Cluster, req.Namespace, req.Name):
		return ownedWrite{conflict: fmt.Sprintf("%s %s/%s exists and is not a Flotilla mirror of %s; left untouched",
			kind, desired.GetNamespace(), desired.GetName(), req)}, nil
	case mirror.NeedsReplace(existing, desired):
		// The source became headless or stopped being so: re-create (UID precondition).
		uid := existing.GetUID()
		if err := writer.Delete(ctx, existing, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return ownedWrite{}, fmt.Errorf("replace %s %s/%s: %w", kind, desired.GetNamespace(), desired.GetName(), err)
		}
		if err := writer.Create(ctx, desired); err != nil {
			return ownedWrite{wrote: true}, fmt.Errorf("create %s %s/%s: %w", kind, desired.GetNamespace(), desired.GetName(), err)
		}
		return ownedWrite{wrote: true, version: desired.GetResourceVersion()}, nil
	case mirror.NeedsUpdate(existing, desired):
		updated := existing.DeepCopyObject().(client.Object)
		mirror.Apply(updated, desired)
		if err := writer.Update(ctx, updated); err != nil {
			return ownedWrite{}, fmt.Errorf("update %s %s/%s: %w", kind, desired.GetNamespace(), desired.GetName(), err)
		}
		return ownedWrite{wrote: true, version: updated.GetResourceVersion()}, nil
	}
	return ownedWrite{version: existing.GetResourceVersion()}, nil
}

// kindOf is the kind of a typed object, for messages.
func kindOf(o client.Object) string {
	return reflect.TypeOf(o).Elem().Name()
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
