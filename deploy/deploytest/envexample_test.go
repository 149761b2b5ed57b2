package deploytest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/config"
)

// TestEnvExampleListsEveryVariable: every variable of every binary, and
// every variable docker-compose.yml reads, has its line in .env.example; no
// secret has a value there.
func TestEnvExampleListsEveryVariable(t *testing.T) {
	t.Parallel()
	listed := map[string]string{} // name -> value of the uncommented line, "#" when commented
	for _, line := range strings.Split(readFile(t, ".env.example"), "\n") {
		if m := envLineRE.FindStringSubmatch(line); m != nil {
			if _, dup := listed[m[1]]; dup {
				t.Errorf(".env.example lists %s twice", m[1])
			}
			listed[m[1]] = m[2]
		} else if m := commentedVarRE.FindStringSubmatch(line); m != nil {
			if _, dup := listed[m[1]]; !dup {
				listed[m[1]] = "#"
			}
		}
	}

	cfg, _ := config.Load(nil) // defaults; validation problems are irrelevant here
	vars := cfg.Vars()
	if len(vars) < 50 {
		t.Fatalf("config lists %d variables; expected the whole table", len(vars))
	}
	for _, v := range vars {
		if _, ok := listed[v.Name]; !ok {
			t.Errorf(".env.example does not list %s (default %q)", v.Name, v.Default)
		}
	}

	refRE := regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`)
	for _, m := range refRE.FindAllStringSubmatch(readFile(t, "docker-compose.yml"), -1) {
		if _, ok := listed[m[1]]; !ok {
			t.Errorf("docker-compose.yml reads ${%s}, which .env.example does not list", m[1])
		}
	}

	// A compose-only variable must not look like ours: every CEPJOBS_*
	// variable reaches the binaries through env_file, and they refuse
	// unknown ones.
	known := map[string]bool{}
	for _, v := range vars {
		known[v.Name] = true
	}
	for name := range listed {
		if strings.HasPrefix(name, "CEPJOBS_") && !known[name] {
			t.Errorf(".env.example lists %s, which no binary knows (they refuse unknown CEPJOBS_* variables)", name)
		}
	}

	for name, value := range listed {
		if value != "#" && value != "" && secretKeyRE.MatchString(name) && !strings.HasSuffix(name, "_ACCESS_KEY") {
			t.Errorf(".env.example gives secret %s a value; leave it empty", name)
		}
	}
	if v := listed["BACKEND_NETWORK_INTERNAL"]; v != "#" {
		t.Errorf(".env.example: BACKEND_NETWORK_INTERNAL must stay commented (development only), got %q", v)
	}
}

// TestMinioInitScript runs minio-init's script, as compose hands it to sh,
// against a stub mc that records its calls.
func TestMinioInitScript(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	s := p.Services["minio-init"]
	if len(s.Entrypoint) < 2 || s.Entrypoint[0] != "/bin/sh" || len(s.Command) != 1 {
		t.Fatalf("minio-init: entrypoint %v command %d args; want /bin/sh -euc and one script", s.Entrypoint, len(s.Command))
	}
	dir := t.TempDir()
	script := strings.ReplaceAll(s.Command[0], "/tmp/", dir+"/")
	log := filepath.Join(dir, "mc.log")
	stub := "#!/bin/sh\necho \"$*\" >> " + log + "\ncase \"$*\" in 'admin policy create '*) cp \"$6\" " + dir + "/policy.copy ;; esac\n"
	if err := os.WriteFile(filepath.Join(dir, "mc"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append(s.Entrypoint[1:], script)...)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
	for k, v := range s.Environment {
		cmd.Env = append(cmd.Env, k+"="+*v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("minio-init script: %v\n%s", err, out)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mb --ignore-existing local/cep-backups",
		"mb --ignore-existing local/cep-exports",
		"mb --ignore-existing local/cep-uploads",
		"admin user add local cepjobs s30deploytest0secret",
		"admin policy attach local cepjobs --user cepjobs",
	} {
		if !strings.Contains(string(calls), want+"\n") {
			t.Errorf("minio-init did not run `mc %s`; calls:\n%s", want, calls)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "policy.copy"))
	if err != nil {
		t.Fatalf("no policy created: %v", err)
	}
	var policy struct {
		Statement []struct {
			Action   []string
			Resource []string
		}
	}
	if err := json.Unmarshal(raw, &policy); err != nil {
		t.Fatalf("policy is not JSON: %v\n%s", err, raw)
	}
	for _, st := range policy.Statement {
		for _, r := range st.Resource {
			if !strings.HasPrefix(r, "arn:aws:s3:::cep-backups") && !strings.HasPrefix(r, "arn:aws:s3:::cep-exports") {
				t.Errorf("cepjobs' MinIO policy reaches %s; want the backup and export buckets only", r)
			}
		}
	}
}
