package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Shell completion (`fleetctl completion bash|zsh|fish|powershell`, cobra's) completes
// member and Baseline names by reading the hub with the connection flags typed so far.

// completionTimeout keeps a tab press from hanging on an unreachable hub: no completion is
// better than a frozen shell.
const completionTimeout = 5 * time.Second

// completeMembers completes the first argument with MemberCluster names.
func completeMembers(hub *hubFlags) cobra.CompletionFunc {
	return completeNames(hub, &fleetv1alpha1.MemberClusterList{})
}

// completeBaselines completes the first argument with Baseline names.
func completeBaselines(hub *hubFlags) cobra.CompletionFunc {
	return completeNames(hub, &fleetv1alpha1.BaselineList{})
}

func completeNames(hub *hubFlags, list client.ObjectList) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return hubNames(cmd.Context(), hub, list, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeMemberFlag completes a flag's value with MemberCluster names.
func completeMemberFlag(hub *hubFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return hubNames(cmd.Context(), hub, &fleetv1alpha1.MemberClusterList{}, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// hubNames lists the names of the objects of list's kind that start with prefix, sorted.
// Failures complete nothing; cobra's debug log (BASH_COMP_DEBUG_FILE) says why.
func hubNames(ctx context.Context, hub *hubFlags, list client.ObjectList, prefix string) []cobra.Completion {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	cfg, err := hub.restConfig()
	if err != nil {
		cobra.CompDebugln(err.Error(), false)
		return nil
	}
	cfg.Timeout = completionTimeout
	c, err := newClient(cfg, io.Discard)
	if err != nil {
		cobra.CompDebugln(err.Error(), false)
		return nil
	}
	if err := c.List(ctx, list); err != nil {
		cobra.CompDebugln(err.Error(), false)
		return nil
	}
	items, err := metaNames(list)
	if err != nil {
		cobra.CompDebugln(err.Error(), false)
		return nil
	}
	var out []cobra.Completion
	for _, name := range items {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// metaNames are the names of a list's items.
func metaNames(list client.ObjectList) ([]string, error) {
	var names []string
	err := meta.EachListItem(list, func(obj runtime.Object) error {
		o, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		names = append(names, o.GetName())
		return nil
	})
	return names, err
}
