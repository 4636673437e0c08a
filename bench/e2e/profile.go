package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// profile fetches a CPU profile of seconds from a sidecar's admin address (its -pprof
// endpoint) into path.
func profile(ctx context.Context, admin string, seconds int, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, seconds), nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("profile %s: HTTP %d: %s", admin, resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", admin, err)
	}
	return f.Close()
}

// topFunctions is `go tool pprof -top` of a profile, after pprof's header: the n functions
// with the most CPU of their own (flat), then with cum, the n with the most CPU in them and
// what they call.
func topFunctions(ctx context.Context, binary, path string, n int, cum bool) (string, error) {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if cum {
		args = append(args, "-cum")
	}
	out, err := exec.CommandContext(ctx, "go", append(args, binary, path)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %w\n%s", path, err, out)
	}
	// pprof's header names the file, build id and time; the rest is the figures.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(l, "File:") && !strings.HasPrefix(l, "Build ID:") && !strings.HasPrefix(l, "Time:") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n"), nil
}
