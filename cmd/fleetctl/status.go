package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// statusInput is what every section of `fleetctl status` reads from.
type statusInput struct {
	hub client.Client
	// hubNamespace holds kubeconfig Secrets and baseline sources.
	hubNamespace string
	// now is the reference for "12s ago", fixed once so that every row agrees.
	now time.Time
	// wide: -o wide, more columns and messages in full.
	wide bool
}

// statusSection is one part of the fleet overview: it reads what it shows from the hub and
// writes a block of text. Sections are printed in order, separated by a blank line, and a
// failing section does not hide the others.
type statusSection struct {
	name   string
	render func(ctx context.Context, in statusInput, w io.Writer) error
}

// statusSections is the fleet overview, in order.
var statusSections = []statusSection{
	{name: "clusters", render: renderClusters},
	{name: "baselines", render: renderBaselines},
	{name: "services", render: renderServices},
}

func newStatusCommand(hub *hubFlags) *cobra.Command {
	hubNamespace := fleetv1alpha1.DefaultHubNamespace
	out := newOutputFlags(outputText, outputWide)
	var exitCode bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show an overview of the fleet: member clusters and their health, baselines in every member, exported Services",
		Long: `status shows the member clusters, the baselines in every member and the exported
Services. -o wide adds columns and prints condition messages in full; -o json|yaml
prints the MemberClusters, Baselines, BaselineBindings and ExportedServices as one
v1 List (as kubectl get would), -o name one kind/name per line.

--exit-code makes the exit status say whether the fleet is ready: 0 when every
MemberCluster and Baseline is Ready and every exported Service Synced (each for the
current generation), 1 when something is not (listed on stderr), 2 when fleetctl could
not tell (the hub did not answer).`,
		Example: `  fleetctl status
  fleetctl status -o json | jq -r '.items[] | select(.kind=="MemberCluster") | .metadata.name'
  fleetctl status --exit-code -o name >/dev/null || echo "fleet not ready"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := func() error {
				if err := out.validate(); err != nil {
					return err
				}
				cfg, err := hub.restConfig()
				if err != nil {
					return err
				}
				c, err := newClient(cfg, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				in := statusInput{hub: c, hubNamespace: hubNamespace, now: time.Now(), wide: out.wide()}
				if out.human() {
					if err := runStatus(cmd.Context(), cmd.OutOrStdout(), in, statusSections); err != nil || !exitCode {
						return err
					}
				}
				snap, err := readFleet(cmd.Context(), c)
				if err != nil {
					return err
				}
				if !out.human() {
					if err := out.printObjects(cmd.OutOrStdout(), snap.objects()); err != nil {
						return err
					}
				}
				if exitCode {
					if problems := snap.notReady(); len(problems) > 0 {
						for _, p := range problems {
							fmt.Fprintln(cmd.ErrOrStderr(), "not ready:", p)
						}
						return &exitError{code: 1}
					}
				}
				return nil
			}()
			if exitCode {
				// 1 is the answer "not ready"; a failure to find out must not look like it.
				return withExitCode(2, err)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&hubNamespace, "hub-namespace", hubNamespace, "Hub namespace of Flotilla's Secrets and baseline sources.")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false,
		"Exit 1 when a member, Baseline or exported Service is not ready (listed on stderr), 2 when the hub cannot be read.")
	out.bind(cmd)
	return cmd
}

func runStatus(ctx context.Context, out io.Writer, in statusInput, sections []statusSection) error {
	var failed []string
	for i, s := range sections {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if err := s.render(ctx, in, out); err != nil {
			fmt.Fprintf(out, "%s: error: %v\n", s.name, err)
			failed = append(failed, s.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not read %s from the hub", strings.Join(failed, ", "))
	}
	return nil
}

func renderClusters(ctx context.Context, in statusInput, w io.Writer) error {
	var list fleetv1alpha1.MemberClusterList
	if err := in.hub.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("the Flotilla API %s is not installed on the hub", fleetv1alpha1.GroupVersion)
		}
		return fmt.Errorf("list memberclusters: %w", err)
	}
	writeClusters(w, list.Items, in.now, in.wide)
	return nil
}

// writeClusters prints the summary line and the table of member clusters.
func writeClusters(w io.Writer, clusters []fleetv1alpha1.MemberCluster, now time.Time, wide bool) {
	if len(clusters) == 0 {
		fmt.Fprintln(w, "No member clusters registered. Register one with: fleetctl register NAME --member-kubeconfig FILE")
		return
	}
	rows := clusterRows(clusters, now, wide)
	ready := 0
	for _, r := range rows {
		if r.ready == string(metav1.ConditionTrue) {
			ready++
		}
	}
	fmt.Fprintf(w, "Clusters: %d (%d ready, %d not ready)\n", len(rows), ready, len(rows)-ready)
	header := []string{"NAME", "READY", "CONNECTED", "VERSION", "NODES", "LAST PROBE"}
	if wide {
		header = append(header, "LABELS", "SECRET")
	}
	table := [][]string{append(header, "REASON/MESSAGE")}
	for _, r := range rows {
		row := []string{r.name, r.ready, r.connected, r.version, r.nodes, r.lastProbe}
		if wide {
			row = append(row, r.labels, r.secret)
		}
		table = append(table, append(row, r.problem))
	}
	writeTable(w, table)
}

// clusterRow is one line of the clusters table, every cell formatted.
type clusterRow struct {
	name, ready, connected, version, nodes, lastProbe, problem string
	// labels and secret are -o wide's extra columns.
	labels, secret string
}

// maxProblemLen keeps a long condition message from wrapping the whole table; the full
// text is in `kubectl describe membercluster`.
const maxProblemLen = 100

// conditionOrder puts the cause before its consequences: bad credentials explain a lost
// connection, which explains not being ready.
var conditionOrder = []string{fleetv1alpha1.ConditionCredentialsValid, fleetv1alpha1.ConditionConnected, fleetv1alpha1.ConditionReady}

func clusterRows(clusters []fleetv1alpha1.MemberCluster, now time.Time, wide bool) []clusterRow {
	sorted := slices.Clone(clusters)
	slices.SortFunc(sorted, func(a, b fleetv1alpha1.MemberCluster) int { return strings.Compare(a.Name, b.Name) })
	rows := make([]clusterRow, 0, len(sorted))
	for _, mc := range sorted {
		st := mc.Status
		r := clusterRow{
			name:      mc.Name,
			ready:     conditionStatus(st.Conditions, fleetv1alpha1.ConditionReady),
			connected: conditionStatus(st.Conditions, fleetv1alpha1.ConditionConnected),
			version:   orDash(st.KubernetesVersion),
			nodes:     "-",
			lastProbe: "-",
			problem:   firstProblem(st.Conditions, wide),
			labels:    labelsText(mc.Labels),
			secret:    mc.Spec.KubeconfigSecretRef.Namespace + "/" + mc.Spec.KubeconfigSecretRef.Name,
		}
		if st.NodeCount != nil {
			r.nodes = strconv.Itoa(int(*st.NodeCount))
		}
		if st.LastProbeTime != nil {
			r.lastProbe = ago(now, st.LastProbeTime.Time)
		}
		if len(st.Conditions) == 0 {
			r.problem = "no status yet: is fleet-controller running?"
		}
		rows = append(rows, r)
	}
	return rows
}

func conditionStatus(conds []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(conds, t); c != nil {
		return string(c.Status)
	}
	return string(metav1.ConditionUnknown)
}

// firstProblem describes the first condition that is not True, causes first; "" when all
// are. Only -o wide prints a long message in full.
func firstProblem(conds []metav1.Condition, full bool) string {
	ordered := make([]metav1.Condition, 0, len(conds))
	for _, t := range conditionOrder {
		if c := meta.FindStatusCondition(conds, t); c != nil {
			ordered = append(ordered, *c)
		}
	}
	for _, c := range conds {
		if !slices.Contains(conditionOrder, c.Type) {
			ordered = append(ordered, c)
		}
	}
	for _, c := range ordered {
		if c.Status == metav1.ConditionTrue {
			continue
		}
		text := c.Reason
		if msg := strings.Join(strings.Fields(c.Message), " "); msg != "" {
			text += ": " + msg
		}
		if r := []rune(text); len(r) > maxProblemLen && !full {
			text = string(r[:maxProblemLen-1]) + "…"
		}
		return text
	}
	return ""
}

// ago formats how long before now t was, as "12s ago"; a t in the future (clock skew
// between hub and this machine) counts as now.
func ago(now, t time.Time) string {
	return duration.HumanDuration(max(now.Sub(t), 0)) + " ago"
}

// labelsText prints labels as k=v,k2=v2, sorted, the way kubectl --show-labels does.
func labelsText(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return orDash(strings.Join(parts, ","))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
