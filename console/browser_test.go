package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetstate/jetstate/console"
)

// The browser tests drive Debian's chromium, headless, with chromedp (as
// examples/chat's do). Screenshots go to $CONSOLE_SCREENSHOTS if set (the
// README's docs/console.png is one), else to the test's temporary
// directory.

// chromium returns the browser's path; without one the test is skipped,
// or fails in CI (CI=true, .ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "chromium is not installed (apt-get install chromium; .ci/run does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: not skipped)")
	}
	t.Skip(why)
	return ""
}

// newPage starts a headless chromium with one page, stopped when the test
// ends, bounded by limit.
func newPage(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	page, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	page, cancelTimeout := context.WithTimeout(page, limit)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(page); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return page
}

// do runs steps on page, failing the test with what was being done.
func do(t *testing.T, page context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(page, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs a with a result on page.
func value[T any](t *testing.T, page context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(page, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshot saves the whole page as name.png (quality 100 is PNG).
func screenshot(t *testing.T, page context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png := value(t, page, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestConsoleInBrowser: a person opens the console, finds a cart from the
// start page, sees its events, sees a new one arrive, and pauses and
// resumes the cart's projection; a read-only console offers no buttons
// and refuses the same request.
func TestConsoleInBrowser(t *testing.T) {
	page := newPage(t, 2*time.Minute)
	s := startSystem(t)
	s.add("alice", "apple", 2)
	s.add("alice", "pear", 1)
	s.add("bob", "plum", 5)
	s.projected()
	base := startConsole(t, s.js, console.Config{AllowWrites: true})

	do(t, page, "find alice's cart from the start page",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), "alice"),
		chromedp.Click(chromedp.ID("find")),
		chromedp.WaitVisible(chromedp.CSS(`tr.event[data-seq="2"]`)),
	)
	key := value(t, page, "the key", chromedp.Text(chromedp.ID("entity-key")))
	first := value(t, page, "event 1", chromedp.Text(chromedp.CSS(`tr.event[data-seq="1"]`)))
	second := value(t, page, "event 2", chromedp.Text(chromedp.CSS(`tr.event[data-seq="2"]`)))
	if key != "alice" || !contains(first, "ItemAdded", `"productId": "apple"`, `"quantity": 2`) || !contains(second, `"productId": "pear"`) {
		t.Fatalf("alice's page: key %q, events\n%s\n%s", key, first, second)
	}

	s.add("alice", "fig", 3) // followed live: appears without a reload
	do(t, page, "see a new event arrive", chromedp.WaitVisible(chromedp.CSS(`tr.event[data-seq="3"]`)))
	if third := value(t, page, "event 3", chromedp.Text(chromedp.CSS(`tr.event[data-seq="3"]`))); !contains(third, `"productId": "fig"`) {
		t.Fatalf("third event %q", third)
	}
	screenshot(t, page, "console-entity")

	do(t, page, "pause the projection",
		chromedp.Click(chromedp.CSS(`nav a[href$="/projections"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-op="pause"]`)),
		chromedp.Click(chromedp.CSS(`button[data-op="pause"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-op="resume"]`)),
	)
	if !s.paused() {
		t.Fatal("the page says paused, the projection is not")
	}
	screenshot(t, page, "console-projections")
	do(t, page, "resume the projection",
		chromedp.Click(chromedp.CSS(`button[data-op="resume"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-op="pause"]`)),
	)
	if s.paused() {
		t.Fatal("the page says resumed, the projection is paused")
	}

	ro := startConsole(t, s.js, console.Config{})
	do(t, page, "open a read-only console",
		chromedp.Navigate(ro+"/s/"+service+"/projections"),
		chromedp.WaitVisible(chromedp.ID("projections")),
	)
	buttons := value(t, page, "count the buttons", chromedp.Evaluate[int](`document.querySelectorAll("button[data-op]").length`))
	status := value(t, page, "POST pause", chromedp.Evaluate[int](
		`fetch("/s/`+service+`/projections/`+projection+`/pause", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if buttons != 0 || status != 403 || s.paused() {
		t.Fatalf("read-only console: %d buttons, POST pause = %d, paused %v", buttons, status, s.paused())
	}

	do(t, page, "the service page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("recent")))
	screenshot(t, page, "console-service")
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
