package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestRunWritesAReproducibleImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if err := os.WriteFile(bin, []byte("#!fake binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config{bin: bin, tag: "jetstate.local/hello:v1", user: "65532:65532", args: []string{"-x"}}
	var archives [][]byte
	for _, name := range []string{"a.tar", "b.tar"} {
		cfg.out = filepath.Join(dir, name)
		if err := run(cfg); err != nil {
			t.Fatalf("run: %v", err)
		}
		b, err := os.ReadFile(cfg.out)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, b)
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("two runs on the same binary wrote different archives")
	}

	img, err := tarball.ImageFromPath(cfg.out, nil)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, got, want string }{
		{"user", cf.Config.User, "65532:65532"},
		{"os", cf.OS, "linux"},
		{"arch", cf.Architecture, runtime.GOARCH},
		{"entrypoint", cf.Config.Entrypoint[0], "/hello"},
		{"cmd", cf.Config.Cmd[0], "-x"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	modes := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		modes[h.Name] = h.Mode
	}
	if modes["hello"] != 0o755 || modes["tmp/"] != 0o1777 {
		t.Errorf("modes: hello %o, tmp/ %o; want 755 and 1777", modes["hello"], modes["tmp/"])
	}
}

func TestRunReportsEveryMissingFlag(t *testing.T) {
	err := run(config{})
	if err == nil {
		t.Fatal("run with no flags succeeded")
	}
	for _, flag := range []string{"-bin", "-tag", "-o"} {
		if !bytes.Contains([]byte(err.Error()), []byte(flag)) {
			t.Errorf("error %q does not name %s", err, flag)
		}
	}
}
