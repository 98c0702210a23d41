package echo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/berthlb/berth/lab/netns"
)

// BulkPath is the HTTP path on which a server streams zeros until the client hangs up:
// the source of Pull's throughput measurements.
const BulkPath = "/bulk"

// serveBulk streams zeros to w until the client goes away.
func serveBulk(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/octet-stream")
	buf := make([]byte, 64<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

type pullRequest struct {
	Addr     netip.AddrPort `json:"addr"`
	Duration time.Duration  `json:"duration"`
}

type pullResult struct {
	Bytes   int64         `json:"bytes"`
	Elapsed time.Duration `json:"elapsed"`
}

// Pull reads from an echo server's BulkPath at addr, from inside ns, for about d after
// the first byte, and returns the throughput in bytes per second. It runs the running
// binary as an echo child in ns.
func Pull(ctx context.Context, ns netns.NS, addr netip.AddrPort, d time.Duration) (float64, error) {
	out, err := runChild(ctx, ns, request{Pull: &pullRequest{Addr: addr, Duration: d}})
	if err != nil {
		return 0, fmt.Errorf("pull from %s in %s: %w", addr, nsName(ns), err)
	}
	var r pullResult
	if err := json.Unmarshal(out, &r); err != nil || r.Elapsed <= 0 {
		return 0, fmt.Errorf("pull from %s in %s: unreadable result %q: %v", addr, nsName(ns), out, err)
	}
	return float64(r.Bytes) / r.Elapsed.Seconds(), nil
}

// pull is the child's side of Pull.
func pull(r pullRequest) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Duration+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr.String()+BulkPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s%s: %s", r.Addr, BulkPath, resp.Status)
	}
	buf := make([]byte, 256<<10)
	// The clock starts at the first byte: connection setup is not throughput.
	if _, err := io.ReadFull(resp.Body, buf[:1]); err != nil {
		return nil, err
	}
	begin := time.Now()
	var total int64
	for time.Since(begin) < r.Duration {
		n, err := resp.Body.Read(buf)
		total += int64(n)
		if err != nil {
			return nil, fmt.Errorf("GET %s%s after %d bytes: %w", r.Addr, BulkPath, total, err)
		}
	}
	return json.Marshal(pullResult{Bytes: total, Elapsed: time.Since(begin)})
}
