// Command client is the HTTP client of the kind end-to-end specs. It GETs -url every
// -interval, each time over a new connection with a fresh DNS lookup (a kept-alive connection
// would stay with one backend and hide a change), and prints one line per attempt:
//
//	<unix nanoseconds> ok <status code> <first line of the body>
//	<unix nanoseconds> err <error>
//
// The specs read these lines with kubectl logs; the timestamps come from the node's clock,
// which is the host's. With -once it makes one attempt, prints its line and exits 0 whatever
// the outcome (the caller judges it).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	url := flag.String("url", "", "URL to GET (required).")
	interval := flag.Duration("interval", 200*time.Millisecond, "Time between attempts.")
	timeout := flag.Duration("timeout", 2*time.Second, "Time limit of one attempt.")
	once := flag.Bool("once", false, "Make one attempt and exit.")
	flag.Parse()
	if *url == "" {
		return fmt.Errorf("-url is required")
	}
	hc := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	if *once {
		fmt.Println(attempt(context.Background(), hc, *url))
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		fmt.Println(attempt(ctx, hc, *url))
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// attempt makes one GET and describes its outcome in one line.
func attempt(ctx context.Context, hc *http.Client, url string) string {
	begin := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Sprintf("%d err %v", begin.UnixNano(), err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Sprintf("%d err %s", begin.UnixNano(), oneLine(err.Error()))
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(io.LimitReader(resp.Body, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("%d err reading the body: %s", begin.UnixNano(), oneLine(err.Error()))
	}
	return fmt.Sprintf("%d ok %d %s", begin.UnixNano(), resp.StatusCode, oneLine(line))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
