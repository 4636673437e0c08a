package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The published Dockerfile's final stages, as tools/cluster/images.sh
// builds them.
const exampleDockerfile = "../../../../../examples/kubernetes/Dockerfile"

func TestParseStageOfTheExampleDockerfile(t *testing.T) {
	for _, target := range []string{"jetstate", "jetstate-operator", "shoppingcart", "readmodel"} {
		f, err := os.Open(exampleDockerfile)
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseStage(f, target)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		want := "/" + target
		if st.src != "/out/"+target || st.dst != want || !slices.Equal(st.entrypoint, []string{want}) ||
			st.user != "65532:65532" || len(st.cmd) != 0 {
			t.Errorf("%s: %+v", target, st)
		}
	}
}

func TestParseStageRefusesWhatTheImageWouldDrop(t *testing.T) {
	const head = "FROM golang AS build\nRUN go build -o /out/x .\nFROM scratch AS x\n"
	tests := map[string]string{
		"run":          "COPY --from=build /out/x /x\nRUN true\nENTRYPOINT [\"/x\"]\nUSER 1:1\n",
		"env":          "COPY --from=build /out/x /x\nENV A=b\nENTRYPOINT [\"/x\"]\nUSER 1:1\n",
		"two copies":   "COPY --from=build /out/x /x\nCOPY --from=build /out/y /y\nENTRYPOINT [\"/x\"]\nUSER 1:1\n",
		"shell form":   "COPY --from=build /out/x /x\nENTRYPOINT /x\nUSER 1:1\n",
		"no user":      "COPY --from=build /out/x /x\nENTRYPOINT [\"/x\"]\n",
		"nested path":  "COPY --from=build /out/x /usr/bin/x\nENTRYPOINT [\"/usr/bin/x\"]\nUSER 1:1\n",
		"copy context": "COPY x /x\nENTRYPOINT [\"/x\"]\nUSER 1:1\n",
	}
	for name, body := range tests {
		if _, err := parseStage(strings.NewReader(head+body), "x"); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	ok := head + "COPY --from=build /out/x /x\nENTRYPOINT [\"/x\", \\\n  \"-a\"]\nCMD [\"-b\"]\nUSER 1:2\nFROM scratch AS y\nRUN true\n"
	st, err := parseStage(strings.NewReader(ok), "x")
	if err != nil || !slices.Equal(st.entrypoint, []string{"/x", "-a"}) || !slices.Equal(st.cmd, []string{"-b"}) || st.user != "1:2" {
		t.Errorf("parse = %+v, %v", st, err)
	}
	if _, err := parseStage(strings.NewReader(ok), "z"); err == nil {
		t.Error("missing stage parsed")
	}
}

func TestRunTakesTheImageFromTheDockerfile(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "readmodel")
	if err := os.WriteFile(bin, []byte("#!fake binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config{bin: bin, tag: "jetstate-readmodel:dev", out: filepath.Join(dir, "a.tar"),
		dockerfile: exampleDockerfile, target: "readmodel"}
	if err := run(cfg); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(cfg.out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/readmodel"}) || cf.Config.User != "65532:65532" {
		t.Errorf("entrypoint %q, user %q", cf.Config.Entrypoint, cf.Config.User)
	}

	cfg.target = "jetstate" // copies /out/jetstate, not readmodel
	if err := run(cfg); err == nil {
		t.Error("a binary the stage does not copy was taken")
	}
	cfg.target, cfg.user = "readmodel", "0:0"
	if err := run(cfg); err == nil {
		t.Error("-user beside -dockerfile was taken")
	}
}
