// Command perfshare reads the call stacks `perf script -F ip,sym` prints
// for a CPU profile of one process and reports the share of its samples
// spent in one function and what that function calls, leaving out the
// samples that also pass through the functions named by -ignore (the
// proxy an auth handler calls). With -hz, perf's sampling rate, and
// -requests, the requests served while it sampled, it also gives them in
// µs of CPU per request: a sample stands for 1/hz seconds of the process's
// CPU. (Not the process's CPU time per request times the share: sampling
// at thousands of hertz costs the process CPU of its own, in the kernel,
// which that time would count.)
//
// bench/load.sh uses it when perf is installed: perf samples at thousands
// of hertz where Go's profiler samples at 100, so a handler's share of a
// 30-second run rests on some ten thousand samples instead of a hundred.
//
//	perf script -i caddy.perf -F ip,sym | perfshare -focus 'caddymodule.(*Handler).ServeHTTP' -ignore reverseproxy -hz 5000 -requests 140000
package main

import (
	"bufio"
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

func main() {
	focus := flag.String("focus", "", "the function whose share is reported, as perf names it, with or without its package path (required)")
	ignore := flag.String("ignore", "", "leave out samples through a function matching this regular expression")
	hz := flag.Float64("hz", 0, "perf's sampling rate (perf record -F)")
	requests := flag.Float64("requests", 0, "the requests served while perf sampled, to give µs per request (with -hz)")
	top := flag.Int("top", 25, "how many of the functions under -focus to list")
	flag.Parse()
	if *focus == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: perf script -F ip,sym | perfshare -focus FUNCTION [-ignore REGEXP] [-hz HZ -requests N] [-top N]")
		os.Exit(2)
	}
	var skip *regexp.Regexp
	if *ignore != "" {
		var err error
		if skip, err = regexp.Compile(*ignore); err != nil {
			fmt.Fprintf(os.Stderr, "perfshare: -ignore: %v\n", err)
			os.Exit(2)
		}
	}
	r, err := tally(os.Stdin, *focus, skip)
	if err != nil {
		fmt.Fprintf(os.Stderr, "perfshare: %v\n", err)
		os.Exit(1)
	}
	if r.total == 0 {
		fmt.Fprintln(os.Stderr, "perfshare: no samples in the input")
		os.Exit(1)
	}
	perSample := 0.0 // µs per request that one sample stands for
	if *hz > 0 && *requests > 0 {
		perSample = 1e6 / *hz / *requests
	}
	r.print(os.Stdout, perSample, *top)
}

// result counts samples: all of them, those in the focus function outside
// the ignored ones, and per function under the focus, the samples it is
// on the stack of (cumulative) and at the top of (self).
type result struct {
	total, own int
	cum, self  map[string]int
}

// tally reads perf script's samples: blocks of "ip symbol" lines, the
// leaf first, separated by blank lines.
func tally(in io.Reader, focus string, skip *regexp.Regexp) (*result, error) {
	r := &result{cum: map[string]int{}, self: map[string]int{}}
	var frames []string
	flush := func() {
		defer func() { frames = frames[:0] }()
		if len(frames) == 0 {
			return
		}
		r.total++
		at := slices.IndexFunc(frames, func(f string) bool { return isFunc(f, focus) })
		if at < 0 {
			return
		}
		if skip != nil && slices.ContainsFunc(frames, skip.MatchString) {
			return
		}
		r.own++
		seen := map[string]bool{}
		for _, f := range frames[:at+1] {
			if !seen[f] {
				seen[f] = true
				r.cum[f]++
			}
		}
		r.self[frames[0]]++
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			flush()
			continue
		}
		_, sym, ok := strings.Cut(line, " ")
		if !ok {
			continue // a frame without a symbol
		}
		sym = strings.TrimSuffix(strings.TrimSpace(sym), " (inlined)")
		frames = append(frames, strings.TrimSuffix(sym, ".abi0"))
	}
	flush()
	return r, sc.Err()
}

// isFunc reports whether the frame f is the function name: the same, or
// name with its package path left off ("caddyauth.Authentication.ServeHTTP"
// for github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth's).
func isFunc(f, name string) bool {
	rest, ok := strings.CutSuffix(f, name)
	return ok && (rest == "" || strings.HasSuffix(rest, "/"))
}

func (r *result) print(w io.Writer, perSample float64, top int) {
	pct := func(n int) float64 { return 100 * float64(n) / float64(r.total) }
	fmt.Fprintf(w, "share %.3f%% own %d total %d", pct(r.own), r.own, r.total)
	if perSample > 0 {
		fmt.Fprintf(w, " µs/req %.2f", float64(r.own)*perSample)
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(r.cum))
	for n := range r.cum {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(r.cum[b], r.cum[a]), cmp.Compare(a, b))
	})
	for _, n := range names[:min(top, len(names))] {
		if perSample > 0 {
			fmt.Fprintf(w, "  %6.2f µs cum %6.2f µs self  %s\n", float64(r.cum[n])*perSample, float64(r.self[n])*perSample, n)
		} else {
			fmt.Fprintf(w, "  %6.3f%% cum %6.3f%% self  %s\n", pct(r.cum[n]), pct(r.self[n]), n)
		}
	}
}
