package status

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// Report formats the errors of several members (or objects) as one report: one line per
// error, sorted so that the same failures always read the same. Each error names its member
// or object itself (see the error-wrapping rule in STYLE.md); Report adds only the count.
// A fleet can fail many ways at once: the first MaxReportLines lines are listed and the rest
// counted, so that a report stays readable wherever it goes (a log line, a condition).
// It is a multierror.ErrorFormatFunc.
func Report(errs []error) string {
	if len(errs) == 1 {
		return errs[0].Error()
	}
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = "  - " + strings.ReplaceAll(err.Error(), "\n", "\n    ")
	}
	sort.Strings(lines)
	if len(lines) > MaxReportLines {
		lines = append(lines[:MaxReportLines], fmt.Sprintf("  - and %d more", len(errs)-MaxReportLines))
	}
	return fmt.Sprintf("%d failures:\n%s", len(errs), strings.Join(lines, "\n"))
}

// Aggregate returns the errors collected in e (by multierror.Append or a multierror.Group)
// as one error formatted by Report, or nil when there are none.
func Aggregate(e *multierror.Error) error {
	if e == nil || len(e.Errors) == 0 {
		return nil
	}
	e.ErrorFormat = Report
	return e
}
