// Command ociarchive wraps one static binary into a single-layer image on an
// empty base and writes it as an image archive (docker-save layout, which
// `ctr images import` and `docker load` take). The binary is /<name>, owned by
// root and mode 0755; the image runs it as -user (65532:65532 by default).
// Layers and config carry fixed timestamps, so the same binary gives the same
// image digest.
//
//	ociarchive -bin bin/pause -tag registry.k8s.io/pause:3.10 -o pause.tar
//
// With -dockerfile and -target, the path of the binary in the image, the
// entrypoint, the default arguments and the user are those of that stage of
// the Dockerfile (see parseStage), and -bin must be the file it copies:
//
//	ociarchive -dockerfile examples/kubernetes/Dockerfile -target jetstate \
//	  -bin out/jetstate -tag jetstate:dev -o jetstate.tar
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
	dockerfile, target  string
}

const defaultUser = "65532:65532"

func main() {
	var cfg config
	var args, env string
	flag.StringVar(&cfg.bin, "bin", "", "static binary to put at /<its base name>")
	flag.StringVar(&cfg.tag, "tag", "", "image reference, e.g. registry.k8s.io/pause:3.10")
	flag.StringVar(&cfg.user, "user", "", "user:group the image runs as (default "+defaultUser+")")
	flag.StringVar(&cfg.out, "o", "", "archive to write")
	flag.StringVar(&args, "args", "", "default arguments (Cmd), space separated")
	flag.StringVar(&env, "env", "", "environment, comma separated KEY=VALUE")
	flag.StringVar(&cfg.dockerfile, "dockerfile", "", "take path, entrypoint, arguments and user from this Dockerfile's -target stage")
	flag.StringVar(&cfg.target, "target", "", "the stage of -dockerfile")
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
	if (cfg.dockerfile == "") != (cfg.target == "") {
		errs = append(errs, errors.New("-dockerfile and -target go together"))
	}
	if cfg.dockerfile != "" && (cfg.user != "" || len(cfg.args) > 0) {
		errs = append(errs, errors.New("-user and -args come from the Dockerfile with -dockerfile"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	path := "/" + filepath.Base(cfg.bin)
	entrypoint, args, user := []string{path}, cfg.args, cfg.user
	if user == "" {
		user = defaultUser
	}
	if cfg.dockerfile != "" {
		f, err := os.Open(cfg.dockerfile)
		if err != nil {
			return err
		}
		st, err := parseStage(f, cfg.target)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.dockerfile, err)
		}
		if filepath.Base(st.src) != filepath.Base(cfg.bin) {
			return fmt.Errorf("%s: stage %s copies %s, not %s", cfg.dockerfile, cfg.target, st.src, cfg.bin)
		}
		if st.entrypoint[0] != st.dst {
			return fmt.Errorf("%s: stage %s runs %s, not the binary it copies (%s)", cfg.dockerfile, cfg.target, st.entrypoint[0], st.dst)
		}
		path, entrypoint, args, user = st.dst, st.entrypoint, st.cmd, st.user
	}
	ref, err := name.NewTag(cfg.tag)
	if err != nil {
		return fmt.Errorf("parse tag %s: %w", cfg.tag, err)
	}
	content, err := os.ReadFile(cfg.bin)
	if err != nil {
		return err
	}
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
	cf.Config.Entrypoint = entrypoint
	cf.Config.Cmd = args
	cf.Config.User = user
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
