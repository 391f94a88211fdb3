// Command nodecheck is the one program of the FROM-scratch test images of package kindnode:
// the shim test runs it in a plain container, the node image test in a pod.
//
//	nodecheck caps          print the effective capability mask (CapEff) of the process
//	nodecheck sleep         wait until SIGTERM/SIGINT
//	nodecheck serve ADDR    answer every HTTP request with "nodecheck <hostname>"
//	nodecheck get URL       GET URL and print the body (fails on a non-200 answer)
//	nodecheck lookup NAME   resolve NAME with the pod's resolv.conf and print the addresses
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nodecheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: nodecheck caps|sleep|serve ADDR|get URL|lookup NAME")
	}
	arg := func() (string, error) {
		if len(args) < 2 {
			return "", fmt.Errorf("%s needs an argument", args[0])
		}
		return args[1], nil
	}
	switch args[0] {
	case "caps":
		return caps()
	case "sleep":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
		return nil
	case "serve":
		addr, err := arg()
		if err != nil {
			return err
		}
		host, _ := os.Hostname()
		return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "nodecheck %s\n", host)
		}))
	case "get":
		url, err := arg()
		if err != nil {
			return err
		}
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		_, err = os.Stdout.Write(body)
		return err
	case "lookup":
		name, err := arg()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(addrs, " "))
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func caps() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			fmt.Println(strings.TrimSpace(v))
			return nil
		}
	}
	return errors.New("no CapEff in /proc/self/status")
}
