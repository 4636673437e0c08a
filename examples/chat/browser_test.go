package chat_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetstate/jetstate/examples/chat/web"
)

// The browser tests drive Debian's chromium, headless, with chromedp. Screenshots go to
// $CHAT_SCREENSHOTS if set (README's screenshot.png is one), else to the test's temporary
// directory.

// inCI tells whether the tests run in CI (.ci/run), where what they need must be there.
func inCI() bool { return os.Getenv("CI") == "true" }

// skipUnlessCI skips the test with why, or fails it in CI.
func skipUnlessCI(t *testing.T, why string) {
	t.Helper()
	if inCI() {
		t.Fatal(why + " (CI=true: not skipped)")
	}
	t.Skip(why)
}

// chromium returns the path of the browser, skipping the test if there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	skipUnlessCI(t, "chromium is not installed (apt-get install chromium; .ci/run does)")
	return ""
}

// newBrowser starts a headless chromium for the test, stopped when it ends, and returns its
// context, from which newPage opens pages.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 720),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// newPage opens a page in a browser context of its own (its own cookies and connections, as
// another person's browser would have), bounded by limit. close closes the page, as a person
// closing the tab; the test's end does too.
func newPage(t *testing.T, browser context.Context, limit time.Duration) (page context.Context, close func()) {
	t.Helper()
	page, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	page, cancelTimeout := context.WithTimeout(page, limit)
	t.Cleanup(cancelTimeout)
	t.Cleanup(cancel)
	return page, func() {
		if err := chromedp.Cancel(page); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("close page: %v", err)
		}
	}
}

// screenshot saves the page's PNG as name.png.
func screenshot(t *testing.T, page context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CHAT_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(page, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// run runs actions on page, failing the test with what was being done.
func run(t *testing.T, page context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(page, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// signIn signs in as name on the page at pageURL.
func signIn(t *testing.T, page context.Context, pageURL, name string) {
	t.Helper()
	run(t, page, "sign in as "+name,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.Click(chromedp.ID("signin-button")),
		chromedp.WaitVisible(chromedp.ID("session")),
	)
}

// friendIs waits until the page shows friend as online ("true") or offline ("false").
func friendIs(friend, online string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#friends li[data-friend=%q][data-online=%q]`, friend, online)))
}

// twoFriends is the chat in two browsers: alice and bob sign in at pageURL, each adds the
// other as a friend and sees them online; bob closes his page and alice sees him offline.
func twoFriends(t *testing.T, pageURL string) {
	browser := newBrowser(t)
	const limit = 2 * time.Minute // generous: every wait below ends on a change in the page
	alice, _ := newPage(t, browser, limit)
	bob, closeBob := newPage(t, browser, limit)

	signIn(t, alice, pageURL, "alice")
	signIn(t, bob, pageURL, "bob")
	for _, p := range []struct {
		page       context.Context
		me, friend string
	}{{alice, "alice", "bob"}, {bob, "bob", "alice"}} {
		run(t, p.page, p.me+" connected and adds "+p.friend,
			chromedp.WaitVisible(chromedp.CSS(`#me-state[data-state="online"]`)),
			chromedp.SendKeys(chromedp.ID("friend"), p.friend),
			chromedp.Click(chromedp.ID("add-button")),
		)
	}
	run(t, alice, "alice sees bob online", friendIs("bob", "true"))
	run(t, bob, "bob sees alice online", friendIs("alice", "true"))
	screenshot(t, alice, "alice-sees-bob-online")
	screenshot(t, bob, "bob-sees-alice-online")

	closeBob()
	start := time.Now()
	run(t, alice, "alice sees bob offline once his page is closed", friendIs("bob", "false"))
	t.Logf("bob offline on alice's page %v after his page closed", time.Since(start).Round(time.Millisecond))
	screenshot(t, alice, "alice-sees-bob-offline")
}

// TestPageWithoutSidecar loads the page in chromium with no sidecar behind it: the page
// signs in, shows that it is reconnecting, and the error the chat binary answers with.
func TestPageWithoutSidecar(t *testing.T) {
	browser := newBrowser(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := &url.URL{Scheme: "http", Host: lis.Addr().String()}
	lis.Close() // nothing listens there any more
	srv := httptest.NewServer(web.Handler(gone, testLogger(t)))
	t.Cleanup(srv.Close)

	page, _ := newPage(t, browser, time.Minute)
	run(t, page, "open the page", chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.ID("signin-form")))
	screenshot(t, page, "signin")
	signIn(t, page, srv.URL, "carol")
	run(t, page, "the page reports the missing sidecar",
		chromedp.WaitVisible(chromedp.CSS(`#me-state[data-state="reconnecting"]`)),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	msg, err := chromedp.Run(page, chromedp.Text(chromedp.ID("error")))
	if err != nil {
		t.Fatal(err)
	}
	if msg != "the sidecar cannot be reached" {
		t.Fatalf("error shown: %q", msg)
	}
	screenshot(t, page, "no-sidecar")
}

// TestChatInBrowsers is the whole chat: NATS, the sidecar and the chat function in-process,
// the page in two headless chromium pages.
func TestChatInBrowsers(t *testing.T) {
	s := startSystem(t)
	srv := httptest.NewServer(web.Handler(s.sidecarURL(), testLogger(t)))
	t.Cleanup(srv.Close)
	twoFriends(t, srv.URL)
}
