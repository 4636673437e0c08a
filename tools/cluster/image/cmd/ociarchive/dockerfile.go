package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
)

// stage is what ociarchive takes from one final stage of a Dockerfile: the
// binary the stage copies from the build stage (its path there and in the
// image), the entrypoint, the default arguments and the user. Reading these
// from the published Dockerfile keeps the registry-less images of
// tools/cluster/images.sh and the `docker build` ones the same by
// construction, with no second list to keep in step.
type stage struct {
	base, src, dst string
	entrypoint     []string
	cmd            []string
	user           string
}

// parseStage finds `FROM <base> AS <target>` and reads the instructions up
// to the next FROM. The stage may hold only what an image of one static
// binary on an empty base can reproduce: one `COPY --from=<stage> <src>
// <dst>`, `ENTRYPOINT` and `CMD` in exec form, and `USER`. Anything else
// (RUN, ENV, WORKDIR, a second COPY, a shell-form ENTRYPOINT) is an error,
// so that a change to the Dockerfile that ociarchive would drop fails the
// build instead of making the two images differ.
func parseStage(r io.Reader, target string) (stage, error) {
	lines, err := logicalLines(r)
	if err != nil {
		return stage{}, err
	}
	var st stage
	found := false
	for _, l := range lines {
		op, rest, _ := strings.Cut(l.text, " ")
		op, rest = strings.ToUpper(op), strings.TrimSpace(rest)
		if op == "FROM" {
			if found {
				break
			}
			f := strings.Fields(rest)
			if len(f) == 3 && strings.EqualFold(f[1], "AS") && f[2] == target {
				found, st.base = true, f[0]
			}
			continue
		}
		if !found {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("line %d: %s in stage %s: %s", l.n, op, target, why) }
		switch op {
		case "COPY":
			f := strings.Fields(rest)
			if st.src != "" {
				return stage{}, bad("a second COPY (ociarchive puts one binary in the image)")
			}
			if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") {
				return stage{}, bad("want COPY --from=<stage> <file> <path>")
			}
			st.src, st.dst = f[1], f[2]
			if path.Dir(st.dst) != "/" || st.dst == "/" {
				return stage{}, bad("the destination must be a file in / (ociarchive makes no directories)")
			}
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				return stage{}, bad("want the exec form, a JSON array")
			}
			if op == "ENTRYPOINT" {
				st.entrypoint = v
			} else {
				st.cmd = v
			}
		case "USER":
			st.user = rest
		default:
			return stage{}, bad("not supported by ociarchive (one static binary on an empty base)")
		}
	}
	switch {
	case !found:
		return stage{}, fmt.Errorf("no stage %q (FROM <image> AS %s)", target, target)
	case st.src == "":
		return stage{}, fmt.Errorf("stage %s copies no binary", target)
	case len(st.entrypoint) == 0:
		return stage{}, fmt.Errorf("stage %s has no ENTRYPOINT", target)
	case st.user == "":
		return stage{}, fmt.Errorf("stage %s has no USER (the base's user is not read: write it out)", target)
	}
	return st, nil
}

type line struct {
	n    int
	text string
}

// logicalLines joins continuation lines and drops comments and blank lines.
func logicalLines(r io.Reader) ([]line, error) {
	var out []line
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		t := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(s)
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(t)
		out = append(out, line{start, strings.TrimSpace(cur.String())})
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, line{start, strings.TrimSpace(cur.String())})
	}
	return out, sc.Err()
}
