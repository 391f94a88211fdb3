package scale

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"testing"
)

// profiler writes the hub's goroutine, heap and CPU profiles of one fleet run into
// $FLOTILLA_BENCH_PROFILE (nothing when unset), named members-N-<what>, so that where the
// goroutines and the CPU go can be read with go tool pprof. For goroutines it also writes
// a summary: goroutines grouped by the function that started them, most first.
type profiler struct {
	tb  testing.TB
	dir string
	n   int
}

// fineHeapProfile samples one allocation in 4 KiB instead of 512 KiB when profiles are
// written: a member's share of the heap is a few MiB, which the default rate resolves into
// a handful of samples only.
func fineHeapProfile() {
	if os.Getenv("FLOTILLA_BENCH_PROFILE") != "" {
		runtime.MemProfileRate = 4 << 10
	}
}

func newProfiler(tb testing.TB, members int) *profiler {
	dir := os.Getenv("FLOTILLA_BENCH_PROFILE")
	if dir != "" {
		must(tb, os.MkdirAll(dir, 0o755))
	}
	return &profiler{tb: tb, dir: dir, n: members}
}

func (p *profiler) path(what string) string {
	return filepath.Join(p.dir, fmt.Sprintf("members-%d-%s", p.n, what))
}

// goroutines writes the full dump (debug=2) and the summary by creator.
func (p *profiler) goroutines(what string) {
	if p.dir == "" {
		return
	}
	var dump bytes.Buffer
	must(p.tb, pprof.Lookup("goroutine").WriteTo(&dump, 2))
	must(p.tb, os.WriteFile(p.path("goroutines-"+what+".txt"), dump.Bytes(), 0o644))
	must(p.tb, os.WriteFile(p.path("goroutines-"+what+"-by-creator.txt"), []byte(byCreator(dump.Bytes())), 0o644))
}

// heap writes the in-use heap profile.
func (p *profiler) heap(what string) {
	if p.dir == "" {
		return
	}
	f, err := os.Create(p.path("heap-" + what + ".pprof"))
	must(p.tb, err)
	defer f.Close()
	must(p.tb, pprof.Lookup("heap").WriteTo(f, 0))
}

// cpu starts a CPU profile and returns the function that ends it.
func (p *profiler) cpu(what string) func() {
	if p.dir == "" {
		return func() {}
	}
	f, err := os.Create(p.path("cpu-" + what + ".pprof"))
	must(p.tb, err)
	must(p.tb, pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		must(p.tb, f.Close())
	}
}

var (
	goroutineHeader = regexp.MustCompile(`^goroutine \d+ `)
	createdBy       = regexp.MustCompile(`^created by (\S+)`)
)

// byCreator counts the goroutines of a debug=2 dump by the function that created each,
// together with the function each is parked in (the top frame outside the runtime).
func byCreator(dump []byte) string {
	counts := map[string]int{}
	var top, creator string
	inStack := false
	flush := func() {
		if inStack {
			counts[creator+"  ->  "+top]++
		}
		top, creator, inStack = "", "(none)", false
	}
	s := bufio.NewScanner(bytes.NewReader(dump))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		switch {
		case goroutineHeader.MatchString(line):
			flush()
			inStack = true
		case strings.HasPrefix(line, "\t"):
		case createdBy.MatchString(line):
			creator = createdBy.FindStringSubmatch(line)[1]
		case top == "" && line != "" && !strings.HasPrefix(line, "runtime.") && !strings.HasPrefix(line, "internal/") &&
			!strings.HasPrefix(line, "sync.") && !strings.HasPrefix(line, "time.Sleep"):
			top = strings.SplitN(line, "(", 2)[0]
		}
	}
	flush()
	type row struct {
		key string
		n   int
	}
	rows := make([]row, 0, len(counts))
	total := 0
	for k, v := range counts {
		rows = append(rows, row{k, v})
		total += v
	}
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].n > rows[j].n || rows[i].n == rows[j].n && rows[i].key < rows[j].key
	})
	var out strings.Builder
	fmt.Fprintf(&out, "%d goroutines\n", total)
	for _, r := range rows {
		fmt.Fprintf(&out, "%6d  %s\n", r.n, r.key)
	}
	return out.String()
}
