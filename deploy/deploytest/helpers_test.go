package deploytest

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/cepcomunicacion/cepjobs/api"
)

// root is the repository root, from this package's directory.
const root = "../.."

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The secrets .env.example marks REQUIRED, with the values the tests give
// them. The hash is made once (bcrypt is slow on purpose).
var (
	hashOnce     sync.Once
	dashHash     string
	dashPassword = "deploytest dashboard password"
)

func testDashHash(t *testing.T) string {
	t.Helper()
	hashOnce.Do(func() {
		h, err := api.HashPassword(dashPassword)
		if err != nil {
			panic(err)
		}
		dashHash = h
	})
	return dashHash
}

const testAPIToken = "cms-deploytest-token-0123456789"

func requiredSecrets(t *testing.T) map[string]string {
	return map[string]string{
		"POSTGRES_PASSWORD":   "pg0deploytest0secret",
		"MINIO_ROOT_PASSWORD": "minio0deploytest0secret",
		"S3_ACCESS_KEY":       "cepjobs",
		"S3_SECRET_KEY":       "s30deploytest0secret",
		"CEPJOBS_API_TOKENS":  "cms:" + testAPIToken + ":leads:write|leads:read",
		// Single quotes, as .env.example says: the hash is full of '$'.
		"CEPJOBS_DASHBOARD_PASSWORD_HASH": "'" + testDashHash(t) + "'",
	}
}

var (
	envLineRE      = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(.*)$`)
	commentedVarRE = regexp.MustCompile(`^# ([A-Z][A-Z0-9_]*)=(.*)$`)
)

// envFile renders .env.example with the values in set (replacing a line of
// the same variable, commented or not, or appended), and with its
// development block uncommented when dev is true. An empty value in set
// empties the variable.
func envFile(t *testing.T, set map[string]string, dev bool) string {
	t.Helper()
	var out []string
	done := map[string]bool{}
	inDev := false
	sc := bufio.NewScanner(strings.NewReader(readFile(t, ".env.example")))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ---- ") {
			inDev = strings.HasPrefix(line, "# ---- Development only")
		}
		name := ""
		if m := envLineRE.FindStringSubmatch(line); m != nil {
			name = m[1]
		} else if m := commentedVarRE.FindStringSubmatch(line); m != nil {
			name = m[1]
			if dev && inDev {
				line = strings.TrimPrefix(line, "# ")
			}
		}
		if v, ok := set[name]; ok && name != "" {
			line = name + "=" + v
			done[name] = true
		}
		out = append(out, line)
	}
	for k, v := range set {
		if !done[k] {
			out = append(out, k+"="+v)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// loadCompose loads docker-compose.yml as `docker compose` would from a
// checkout whose .env is env: the file is copied into a scratch directory
// with that .env beside it. Only the variables of .env are seen, never the
// test process's environment.
func loadCompose(t *testing.T, env string, profiles []string, opts ...cli.ProjectOptionsFn) (*types.Project, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(readFile(t, "docker-compose.yml")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(dir),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	}, opts...)
	o, err := cli.NewProjectOptions([]string{filepath.Join(dir, "docker-compose.yml")}, all...)
	if err != nil {
		t.Fatal(err)
	}
	return o.LoadProject(context.Background())
}

// mustLoad loads the stack with every profile and the required secrets set.
func mustLoad(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, envFile(t, requiredSecrets(t), false), []string{"llm", "mailhog", "tools"})
	if err != nil {
		t.Fatalf("load docker-compose.yml with .env.example and the required secrets: %v", err)
	}
	return p
}

// environ is a service's resolved environment in os.Environ form.
func environ(s types.ServiceConfig) []string {
	var out []string
	for k, v := range s.Environment {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out
}
