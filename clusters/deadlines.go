package clusters

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// withDeadline wraps a member client so that every call carries a deadline of at most
// timeout, whatever context the caller passes: a reconcile's context has none, and a
// member that accepts a connection and then stops answering would hold the worker forever.
// The rest.Config Timeout bounds the same calls at the HTTP level; this bounds the waits
// before them too (client-side rate limiting, a discovery refresh).
func withDeadline(c client.WithWatch, timeout time.Duration) client.WithWatch {
	bound := func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, timeout)
	}
	return interceptor.NewClient(c, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.List(ctx, list, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.Create(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.Delete(ctx, obj, opts...)
		},
		DeleteAllOf: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteAllOfOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.DeleteAllOf(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.Patch(ctx, obj, patch, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.Apply(ctx, obj, opts...)
		},
		SubResourceGet: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceGetOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.SubResource(sub).Get(ctx, obj, subObj, opts...)
		},
		SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.SubResource(sub).Create(ctx, obj, subObj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			ctx, cancel := bound(ctx)
			defer cancel()
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
}

// deadlineReader bounds reads of a member cache: a Get or List of a kind not synced yet
// waits for its first list, which never comes from a member that stopped answering.
type deadlineReader struct {
	client.Reader
	timeout time.Duration
}

func (r deadlineReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r deadlineReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.Reader.List(ctx, list, opts...)
}
