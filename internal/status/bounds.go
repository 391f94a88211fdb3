package status

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Status must always be writable: a condition message the API server refuses (metav1.Condition
// allows 32 KiB), or an event note it refuses (events.k8s.io/v1 allows 1 KiB), is a report that
// fails on every retry, and the person it was for never sees it. Anything Flotilla writes that
// grows with the fleet or with the input — lists of objects, members, addresses, errors — is
// capped here, and what was left out is counted so that a reader knows there is more.
const (
	// MaxMessage is the longest condition message Flotilla writes, in bytes: long enough for
	// a few dozen named failures, short enough to read in `kubectl describe`.
	MaxMessage = 4096
	// MaxNote is the longest event note the API server accepts (events.k8s.io/v1), in bytes.
	MaxNote = 1024
	// MaxReportLines is how many failures Report lists before it only counts the rest.
	MaxReportLines = 20
)

// Truncate cuts msg to at most limit bytes, on a UTF-8 boundary, ending in a count of the
// bytes left out. A msg within the limit is returned as it is.
func Truncate(msg string, limit int) string {
	if len(msg) <= limit {
		return msg
	}
	// The suffix counts what the cut leaves out, and its own length depends on that count:
	// measure it with the largest count it can say.
	suffix := func(n int) string { return fmt.Sprintf("… (%d more bytes)", n) }
	keep := max(limit-len(suffix(len(msg))), 0)
	for keep > 0 && !utf8.RuneStart(msg[keep]) {
		keep--
	}
	return msg[:keep] + suffix(len(msg)-keep)
}

// List joins the first show items with sep and counts the others: "a; b; c; and 4 more".
func List(items []string, show int, sep string) string {
	if len(items) <= show {
		return strings.Join(items, sep)
	}
	return fmt.Sprintf("%s%sand %d more", strings.Join(items[:show], sep), sep, len(items)-show)
}

// Cap keeps the first limit items of a status list and returns how many it left out: what
// an API list with a MaxItems marker of the same limit can hold.
func Cap[T any](items []T, limit int) ([]T, int32) {
	if len(items) <= limit {
		return items, 0
	}
	return items[:limit:limit], int32(len(items) - limit)
}
