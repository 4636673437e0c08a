// Command ociarchive wraps one static binary into a single-layer image on an
// empty base and writes it as an image archive (docker-save layout, which
// `ctr images import` and `docker load` take). The binary is /<name>, owned by
// root and mode 0755; the image runs it as -user (65532:65532 by default).
// Layers and config carry fixed timestamps, so the same binary gives the same
// image digest.
//
//	ociarchive -bin bin/pause -tag registry.k8s.io/pause:3.10 -o pause.tar
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type config struct {
	bin, tag, user, out string
	args, env           []string
}

func main() {
	var cfg config
	var args, env string
	flag.StringVar(&cfg.bin, "bin", "", "static binary to put at /<its base name>")
	flag.StringVar(&cfg.tag, "tag", "", "image reference, e.g. registry.k8s.io/pause:3.10")
	flag.StringVar(&cfg.user, "user", "65532:65532", "user:group the image runs as")
	flag.StringVar(&cfg.out, "o", "", "archive to write")
	flag.StringVar(&args, "args", "", "default arguments (Cmd), space separated")
	flag.StringVar(&env, "env", "", "environment, comma separated KEY=VALUE")
	flag.Parse()
	cfg.args = strings.Fields(args)
	if env != "" {
		cfg.env = strings.Split(env, ",")
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "ociarchive:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	var errs []error
	if cfg.bin == "" {
		errs = append(errs, errors.New("-bin is required"))
	}
	if cfg.tag == "" {
		errs = append(errs, errors.New("-tag is required"))
	}
	if cfg.out == "" {
		errs = append(errs, errors.New("-o is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ref, err := name.NewTag(cfg.tag)
	if err != nil {
		return fmt.Errorf("parse tag %s: %w", cfg.tag, err)
	}
	content, err := os.ReadFile(cfg.bin)
	if err != nil {
		return err
	}
	path := "/" + filepath.Base(cfg.bin)
	layerTar, err := layer(path[1:], content)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{path}
	cf.Config.Cmd = cfg.args
	cf.Config.User = cfg.user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = append([]string{"PATH=/"}, cfg.env...)
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	tmp := cfg.out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", cfg.out, err)
	}
	return os.Rename(tmp, cfg.out)
}

// layer is the image's only layer: the binary at /<file>, and /tmp.
func layer(file string, content []byte) ([]byte, error) {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	epoch := time.Unix(0, 0)
	hdrs := []*tar.Header{
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 01777, ModTime: epoch},
		{Name: file, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content)), ModTime: epoch},
	}
	for _, h := range hdrs {
		if err := w.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := w.Write(content); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
