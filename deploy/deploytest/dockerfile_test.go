package deploytest

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/config"
)

// The Dockerfile is checked statically: no Docker engine runs here. The
// parser knows what deploy/Dockerfile uses (line continuations, comments,
// FROM … AS, one instruction per logical line), not the whole syntax.

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

type stage struct {
	name, base string
	instrs     []instruction
}

type dockerfile struct {
	globalArgs []instruction
	stages     []*stage
}

func parseDockerfile(t *testing.T, text string) dockerfile {
	t.Helper()
	var df dockerfile
	var cur *stage
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				t.Fatalf("Dockerfile:%d: FROM without an image", start)
			}
			cur = &stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				cur.name = f[2]
			}
			df.stages = append(df.stages, cur)
			continue
		}
		if cur == nil {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", start, in.cmd)
			}
			df.globalArgs = append(df.globalArgs, in)
			continue
		}
		cur.instrs = append(cur.instrs, in)
	}
	return df
}

func (df dockerfile) stage(name string) *stage {
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// chain is the stage and the stages it is built FROM, nearest first.
func (df dockerfile) chain(name string) []*stage {
	var out []*stage
	for s := df.stage(name); s != nil; s = df.stage(s.base) {
		out = append(out, s)
	}
	return out
}

// last returns the last instruction cmd that applies to a target, looking
// through its FROM chain.
func (df dockerfile) last(target, cmd string) (instruction, bool) {
	for _, s := range df.chain(target) {
		for i := len(s.instrs) - 1; i >= 0; i-- {
			if s.instrs[i].cmd == cmd {
				return s.instrs[i], true
			}
		}
	}
	return instruction{}, false
}

func (df dockerfile) all(target, cmd string) []instruction {
	var out []instruction
	for _, s := range df.chain(target) {
		for _, in := range s.instrs {
			if in.cmd == cmd {
				out = append(out, in)
			}
		}
	}
	return out
}

func makefileVar(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` :?= (.*)$`).FindStringSubmatch(readFile(t, "Makefile"))
	if m == nil {
		t.Fatalf("Makefile has no %s", name)
	}
	return m[1]
}

func TestDockerfileTargets(t *testing.T) {
	t.Parallel()
	df := parseDockerfile(t, readFile(t, "deploy/Dockerfile"))

	binaries := strings.Fields(makefileVar(t, "BINARIES"))
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, e := range entries {
		if e.IsDir() {
			cmds = append(cmds, e.Name())
		}
	}
	if a, b := slices.Sorted(slices.Values(binaries)), slices.Sorted(slices.Values(cmds)); !slices.Equal(a, b) {
		t.Fatalf("Makefile BINARIES %v and cmd/ %v differ", a, b)
	}

	for _, bin := range binaries {
		if df.stage(bin) == nil {
			t.Errorf("no target %q: `docker build --target %s` would fail", bin, bin)
			continue
		}
		u, ok := df.last(bin, "USER")
		user := strings.Split(u.args, ":")[0]
		switch {
		case !ok:
			t.Errorf("target %s: no USER anywhere in its chain: it would run as root", bin)
		case user == "" || user == "root" || user == "0":
			t.Errorf("target %s runs as %q (Dockerfile:%d); want a non-root user", bin, u.args, u.line)
		case !regexp.MustCompile(`^[0-9]+(:[0-9]+)?$`).MatchString(u.args):
			t.Errorf("target %s: USER %q; want numeric uid:gid (Kubernetes runAsNonRoot can only verify numbers)", bin, u.args)
		}
		want := `["/usr/local/bin/` + bin + `"]`
		if e, _ := df.last(bin, "ENTRYPOINT"); e.args != want {
			t.Errorf("target %s ENTRYPOINT: got %s, want %s", bin, e.args, want)
		}
		copied := false
		for _, c := range df.stage(bin).instrs {
			if c.cmd == "COPY" && strings.Contains(c.args, "--from=build /out/"+bin+" ") {
				copied = true
			}
		}
		if !copied {
			t.Errorf("target %s does not copy /out/%s from the build stage", bin, bin)
		}
	}

	bases := map[string]string{
		"intake": "gcr.io/distroless/static", "worker-automation": "gcr.io/distroless/static",
		"worker-llm": "gcr.io/distroless/static", "scheduler": "gcr.io/distroless/static",
		"worker-stats": "debian:", "cepjobs": "debian:",
	}
	for target, want := range bases {
		ch := df.chain(target)
		if len(ch) == 0 {
			continue
		}
		if root := ch[len(ch)-1].base; !strings.HasPrefix(root, want) {
			t.Errorf("target %s is built on %s; want %s…", target, root, want)
		}
		if want == "gcr.io/distroless/static" && !strings.HasSuffix(ch[len(ch)-1].base, ":nonroot") {
			t.Errorf("target %s: want the distroless :nonroot variant, got %s", target, ch[len(ch)-1].base)
		}
	}
	for _, target := range []string{"worker-stats", "cepjobs"} {
		found := false
		for _, r := range df.all(target, "RUN") {
			if strings.Contains(r.args, `"postgresql-client-${PG_MAJOR}"`) && strings.Contains(r.args, "apt.postgresql.org") {
				found = true
			}
		}
		if !found {
			t.Errorf("target %s does not install postgresql-client-${PG_MAJOR} from PGDG", target)
		}
	}
}

func TestDockerfileHygiene(t *testing.T) {
	t.Parallel()
	df := parseDockerfile(t, readFile(t, "deploy/Dockerfile"))
	args := map[string]string{}
	for _, a := range df.globalArgs {
		k, v, _ := strings.Cut(a.args, "=")
		args[k] = v
	}
	if args["PG_MAJOR"] != "16" {
		t.Errorf("global ARG PG_MAJOR: got %q, want 16 (the platform's server)", args["PG_MAJOR"])
	}
	build := df.stage("build")
	if build == nil {
		t.Fatal("no build stage")
	}
	hasVersion := false
	for _, in := range build.instrs {
		if in.cmd == "ARG" && strings.HasPrefix(in.args, "VERSION") {
			hasVersion = true
		}
	}
	if !hasVersion {
		t.Error("the build stage declares no ARG VERSION")
	}

	// A tag (a version, or a Debian suite), never none or latest. Digests
	// would pin harder; they are left to the CI that pushes the images.
	pinned := regexp.MustCompile(`:[A-Za-z0-9][A-Za-z0-9._-]*$`)
	for _, s := range df.stages {
		if df.stage(s.base) != nil {
			continue
		}
		base := s.base
		for k, v := range args {
			base = strings.ReplaceAll(base, "${"+k+"}", v)
		}
		if !pinned.MatchString(base) {
			t.Errorf("FROM %s (%s): pin a version tag", s.base, base)
		}
		if strings.HasSuffix(base, ":latest") {
			t.Errorf("FROM %s: never latest", s.base)
		}
		for _, in := range s.instrs {
			if in.cmd == "ADD" {
				t.Errorf("Dockerfile:%d: ADD %s: use COPY (ADD fetches URLs and unpacks archives)", in.line, in.args)
			}
			if in.cmd == "RUN" && regexp.MustCompile(`\b(curl|wget)\b`).MatchString(in.args) {
				t.Errorf("Dockerfile:%d: RUN downloads with curl/wget; only apt (signed) may fetch", in.line)
			}
		}
	}

	// Healthchecks probe the port the binary listens on by default.
	cfg, _ := config.Load(nil)
	defaults := map[string]string{}
	for _, v := range cfg.Vars() {
		defaults[v.Name] = v.Default
	}
	probes := map[string]string{
		"intake":            "http://127.0.0.1" + defaults["CEPJOBS_HTTP_ADDR"] + "/readyz",
		"worker-automation": "http://127.0.0.1" + defaults["CEPJOBS_AUTOMATION_METRICS_ADDR"] + "/healthz",
		"worker-llm":        "http://127.0.0.1" + defaults["CEPJOBS_LLM_METRICS_ADDR"] + "/healthz",
		"worker-stats":      "http://127.0.0.1" + defaults["CEPJOBS_STATS_METRICS_ADDR"] + "/healthz",
	}
	for target, url := range probes {
		hc, ok := df.last(target, "HEALTHCHECK")
		if !ok || !strings.Contains(hc.args, `"`+url+`"`) || !strings.Contains(hc.args, `"/usr/local/bin/wget"`) {
			t.Errorf("target %s HEALTHCHECK: got %q, want wget of %s", target, hc.args, url)
		}
		probe := false
		for _, c := range df.all(target, "COPY") {
			if strings.Contains(c.args, "--from=probe /bin/wget /usr/local/bin/wget") {
				probe = true
			}
		}
		if !probe {
			t.Errorf("target %s has a HEALTHCHECK but no probe wget", target)
		}
	}
	for _, target := range []string{"scheduler", "cepjobs"} {
		if hc, ok := df.last(target, "HEALTHCHECK"); ok {
			t.Errorf("target %s: HEALTHCHECK %q, but it serves no HTTP", target, hc.args)
		}
	}
}

// TestDockerfileBuildStep runs the build stage's RUN here, as the image
// build would (same flags, VERSION set), and checks what it makes: every
// binary, statically linked, reporting the stamped version.
func TestDockerfileBuildStep(t *testing.T) {
	t.Parallel()
	df := parseDockerfile(t, readFile(t, "deploy/Dockerfile"))
	build := df.stage("build")
	var script string
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "VERSION=deploytest-1.2.3", "TARGETOS=", "TARGETARCH="}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for _, in := range build.instrs {
		switch in.cmd {
		case "ENV":
			env = append(env, strings.Fields(in.args)...)
		case "RUN":
			if strings.Contains(in.args, "go build") {
				script = in.args
			}
		}
	}
	for strings.HasPrefix(script, "--mount=") {
		_, script, _ = strings.Cut(script, " ")
	}
	for _, want := range []string{"-trimpath", "-ldflags", "${VERSION}"} {
		if !strings.Contains(script, want) {
			t.Errorf("build RUN lacks %s: %s", want, script)
		}
	}
	xflag := regexp.MustCompile(`-X (\S+)=\$\(VERSION\)`).FindStringSubmatch(makefileVar(t, "LDFLAGS"))
	if xflag == nil || !strings.Contains(script, "-X "+xflag[1]+"=${VERSION}") {
		t.Fatalf("build RUN does not stamp the version as the Makefile does (%v): %s", xflag, script)
	}
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("build stage ENV lacks CGO_ENABLED=0: %v", env)
	}
	if !strings.Contains(script, "for b in "+makefileVar(t, "BINARIES")+";") {
		t.Errorf("build RUN does not build the Makefile's BINARIES (%s)", makefileVar(t, "BINARIES"))
	}

	// Two binaries are enough to check the flags (the loop's list is
	// checked above); all six would take minutes on a cold cache.
	binaries := []string{"intake", "scheduler"}
	script = strings.Replace(script, "for b in "+makefileVar(t, "BINARIES")+";", "for b in "+strings.Join(binaries, " ")+";", 1)
	out := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", strings.ReplaceAll(script, "/out/", out+"/"))
	cmd.Dir = root
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build step failed here: %v\n%s", err, b)
	}
	for _, bin := range binaries {
		path := filepath.Join(out, bin)
		f, err := elf.Open(path)
		if err != nil {
			t.Errorf("%s: %v", bin, err)
			continue
		}
		if f.Section(".interp") != nil {
			t.Errorf("%s is dynamically linked (has .interp); distroless static has no libc", bin)
		}
		f.Close()
		v, err := exec.Command(path, "--version").Output()
		if err != nil || !strings.Contains(string(v), "deploytest-1.2.3") {
			t.Errorf("%s --version: got %q (%v), want the VERSION build arg", bin, v, err)
		}
	}
}
