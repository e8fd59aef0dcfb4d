// Command netprobe measures the guest's network for the network benchmark
// (netbench_test.go); it runs inside the guest, built static.
//
//	netprobe get URL          download URL, print bytes, milliseconds and MB/s
//	netprobe connect ADDR N   open and close N TCP connections, print p50 and p90
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: netprobe get URL | netprobe connect ADDR N")
	}
	switch args[0] {
	case "get":
		start := time.Now()
		resp, err := http.Get(args[1])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return err
		}
		d := time.Since(start)
		fmt.Printf("bytes=%d ms=%d mbps=%.1f\n", n, d.Milliseconds(), float64(n)/1e6/d.Seconds())
	case "connect":
		n := 20
		if len(args) > 2 {
			n, _ = strconv.Atoi(args[2])
		}
		var ds []time.Duration
		for range n {
			start := time.Now()
			c, err := net.DialTimeout("tcp", args[1], 5*time.Second)
			if err != nil {
				return err
			}
			ds = append(ds, time.Since(start))
			c.Close()
		}
		slices.Sort(ds)
		fmt.Printf("n=%d p50_us=%d p90_us=%d\n", n, ds[n/2].Microseconds(), ds[n*9/10].Microseconds())
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
	return nil
}
