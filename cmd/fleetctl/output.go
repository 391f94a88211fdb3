package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// Output formats fleetctl draws itself; every other -o value goes to cli-runtime's printers
// (json, yaml, name, jsonpath, go-template ...), exactly as kubectl prints them.
const (
	outputText = ""
	outputWide = "wide"
)

// outputFlags are -o and its companions (--template, --show-managed-fields: kubectl's, which
// leave metadata.managedFields out unless asked) of a command that prints hub objects.
type outputFlags struct {
	print *genericclioptions.PrintFlags
	// extraFormats are the human formats the command draws itself (always text; wide if the
	// command has more columns to show).
	extraFormats []string
}

func newOutputFlags(defaultFormat string, extra ...string) *outputFlags {
	return &outputFlags{
		print:        genericclioptions.NewPrintFlags("").WithDefaultOutput(defaultFormat).WithTypeSetter(clientScheme),
		extraFormats: extra,
	}
}

func (o *outputFlags) bind(cmd *cobra.Command) {
	o.print.AddFlags(cmd)
	// AddFlags describes -o with the printers' formats only; say what this command accepts.
	cmd.Flags().Lookup("output").Usage = "Output format. One of: (" + strings.Join(o.allowed(), ", ") + ")."
}

func (o *outputFlags) format() string { return *o.print.OutputFormat }

// human reports whether the command draws its own text (tables, summaries).
func (o *outputFlags) human() bool {
	f := o.format()
	return f == outputText || slices.Contains(o.extraFormats, f)
}

func (o *outputFlags) wide() bool { return o.format() == outputWide }

func (o *outputFlags) allowed() []string {
	return append(slices.Clone(o.extraFormats), o.print.AllowedFormats()...)
}

// validate fails on an unknown -o before anything is read or written, naming what is allowed.
func (o *outputFlags) validate() error {
	if o.human() {
		return nil
	}
	if _, err := o.printer(); err != nil {
		if genericclioptions.IsNoCompatiblePrinterError(err) {
			return fmt.Errorf("unknown output format %q: use one of %s", o.format(), strings.Join(o.allowed(), ", "))
		}
		return err
	}
	return nil
}

func (o *outputFlags) printer() (printers.ResourcePrinter, error) { return o.print.ToPrinter() }

// printObjects prints objs as one v1 List, the shape `kubectl get a,b -o json` prints:
// -o name prints one kind/name line per object, -o yaml a List document.
func (o *outputFlags) printObjects(w io.Writer, objs []runtime.Object) error {
	p, err := o.printer()
	if err != nil {
		return err
	}
	list, err := toList(objs)
	if err != nil {
		return err
	}
	return p.PrintObj(list, w)
}

// toList converts typed objects into an unstructured v1 List whose items carry their
// apiVersion and kind, which typed objects read through a client do not.
func toList(objs []runtime.Object) (*unstructured.UnstructuredList, error) {
	list := &unstructured.UnstructuredList{Object: map[string]any{}}
	list.SetAPIVersion("v1")
	list.SetKind("List")
	for _, obj := range objs {
		item, err := toUnstructured(obj)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, *item)
	}
	return list, nil
}

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u, nil
	}
	gvk, err := apiutil.GVKForObject(obj, clientScheme)
	if err != nil {
		return nil, err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u, nil
}
