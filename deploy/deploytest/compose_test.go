package deploytest

import (
	"context"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/cepcomunicacion/cepjobs/internal/config"
)

// fleet maps each cepjobs service to its Dockerfile target.
var fleet = map[string]string{
	"intake":            "intake",
	"worker-automation": "worker-automation",
	"worker-llm":        "worker-llm",
	"worker-stats":      "worker-stats",
	"scheduler":         "scheduler",
	"cepjobs":           "cepjobs",
}

// oneShot services run to completion; every other service is long-running
// and needs a health check.
var oneShot = map[string]bool{"minio-init": true, "cepjobs": true}

// noProbe lists the long-running services whose health check is explicitly
// disabled, and why.
var noProbe = map[string]string{
	"scheduler": "serves no HTTP and has no probe subcommand: nothing to ask",
}

func TestComposeRefusesMissingSecrets(t *testing.T) {
	t.Parallel()
	for name := range requiredSecrets(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			set := requiredSecrets(t)
			set[name] = ""
			_, err := loadCompose(t, envFile(t, set, false), nil)
			if err == nil {
				t.Fatalf("compose loaded with %s empty; want an error naming it", name)
			}
			for _, want := range []string{"required variable " + name + " is missing a value", "set " + name + " in .env"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error for empty %s: got %q, want it to contain %q", name, err, want)
				}
			}
		})
	}
	t.Run("pristine .env.example", func(t *testing.T) {
		t.Parallel()
		if _, err := loadCompose(t, readFile(t, ".env.example"), nil); err == nil {
			t.Fatal("compose loaded with .env.example copied as is; want it to refuse the empty secrets")
		}
	})
}

func TestComposeServicesAndProfiles(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	want := []string{"cepjobs", "intake", "mailhog", "minio", "minio-init", "postgres", "redis", "scheduler", "worker-automation", "worker-llm", "worker-stats"}
	if got := p.ServiceNames(); !slices.Equal(got, want) {
		t.Fatalf("services with every profile: got %v, want %v", got, want)
	}
	profiles := map[string][]string{"worker-llm": {"llm"}, "mailhog": {"mailhog"}, "cepjobs": {"tools"}}
	for _, s := range p.Services {
		if got, want := s.Profiles, profiles[s.Name]; !slices.Equal(got, want) {
			t.Errorf("%s profiles: got %v, want %v", s.Name, got, want)
		}
	}

	def, err := loadCompose(t, envFile(t, requiredSecrets(t), false), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDefault := []string{"intake", "minio", "minio-init", "postgres", "redis", "scheduler", "worker-automation", "worker-stats"}
	if got := def.ServiceNames(); !slices.Equal(got, wantDefault) {
		t.Errorf("services of a plain `docker compose up`: got %v, want %v", got, wantDefault)
	}

	for name, target := range fleet {
		s := p.Services[name]
		if s.Build == nil || s.Build.Target != target || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s build: got %+v, want deploy/Dockerfile target %s", name, s.Build, target)
			continue
		}
		for _, arg := range []string{"VERSION", "PG_MAJOR"} {
			if v := s.Build.Args[arg]; v == nil || *v == "" {
				t.Errorf("%s build: build arg %s not passed", name, arg)
			}
		}
	}
	if got := *p.Services["intake"].Build.Args["PG_MAJOR"]; got != "16" {
		t.Errorf("PG_MAJOR default: got %s, want 16 (the platform's PostgreSQL)", got)
	}
}

func TestComposeNetworks(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	for name, internal := range map[string]bool{"internal": true, "public": false, "egress": false} {
		n, ok := p.Networks[name]
		if !ok {
			t.Errorf("network %s missing", name)
			continue
		}
		if n.Internal != internal {
			t.Errorf("network %s: internal %v, want %v", name, n.Internal, internal)
		}
	}
	want := map[string][]string{
		"redis":             {"internal"},
		"postgres":          {"internal"},
		"minio":             {"internal", "public"},
		"minio-init":        {"internal"},
		"mailhog":           {"internal", "public"},
		"intake":            {"internal", "public"},
		"worker-automation": {"egress", "internal"},
		"worker-llm":        {"egress", "internal"},
		"worker-stats":      {"egress", "internal"},
		"scheduler":         {"internal"},
		"cepjobs":           {"egress", "internal"},
	}
	for _, s := range p.Services {
		var got []string
		for n := range s.Networks {
			got = append(got, n)
		}
		slices.Sort(got)
		if !slices.Equal(got, want[s.Name]) {
			t.Errorf("%s networks: got %v, want %v", s.Name, got, want[s.Name])
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s:%d on %q; want loopback only (127.0.0.1)", s.Name, port.Published, port.Target, port.HostIP)
			}
		}
	}
}

func TestComposeHealthChecksAndOrder(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	healthy := map[string]bool{}
	for _, s := range p.Services {
		if oneShot[s.Name] {
			if s.Restart != "no" {
				t.Errorf("%s runs once: restart %q, want \"no\"", s.Name, s.Restart)
			}
			continue
		}
		if s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s restart: got %q, want unless-stopped", s.Name, s.Restart)
		}
		hc := s.HealthCheck
		switch {
		case hc == nil:
			t.Errorf("%s is long-running and has no health check", s.Name)
		case hc.Disable:
			if noProbe[s.Name] == "" {
				t.Errorf("%s disables its health check; only %v may (they have nothing to probe)", s.Name, noProbe)
			}
		case len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL"):
			t.Errorf("%s health check: got %v, want a CMD or CMD-SHELL test", s.Name, hc.Test)
		default:
			healthy[s.Name] = true
		}
	}

	H, C := types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully
	want := map[string]map[string]string{
		"minio-init":        {"minio": H},
		"intake":            {"redis": H, "postgres": H},
		"worker-automation": {"redis": H, "postgres": H, "intake": H},
		"worker-llm":        {"redis": H, "postgres": H, "intake": H},
		"worker-stats":      {"redis": H, "postgres": H, "intake": H, "minio-init": C},
		"scheduler":         {"redis": H},
	}
	for _, s := range p.Services {
		got := map[string]string{}
		for dep, d := range s.DependsOn {
			got[dep] = d.Condition
			if d.Condition == H && !healthy[dep] {
				t.Errorf("%s waits for %s to be healthy, which has no enabled health check", s.Name, dep)
			}
		}
		w := want[s.Name]
		if len(got) != len(w) {
			t.Errorf("%s depends_on: got %v, want %v", s.Name, got, w)
			continue
		}
		for dep, cond := range w {
			if got[dep] != cond {
				t.Errorf("%s depends_on %s: got condition %q, want %q", s.Name, dep, got[dep], cond)
			}
		}
	}
}

// TestComposeProbesAndGracePeriods checks each probe asks the port its
// process listens on, and that docker stop waits longer than the process's
// own drain: otherwise SIGKILL cuts in-flight requests, or leaves tasks
// leased until asynq's recoverer reclaims them.
func TestComposeProbesAndGracePeriods(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	probes := map[string]struct{ addrVar, path string }{
		"intake":            {"CEPJOBS_HTTP_ADDR", "/readyz"},
		"worker-automation": {"CEPJOBS_AUTOMATION_METRICS_ADDR", "/healthz"},
		"worker-llm":        {"CEPJOBS_LLM_METRICS_ADDR", "/healthz"},
		"worker-stats":      {"CEPJOBS_STATS_METRICS_ADDR", "/healthz"},
	}
	for name, probe := range probes {
		s := p.Services[name]
		cfg, err := config.Load(environ(s))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var addr string
		for _, v := range cfg.Vars() {
			if v.Name == probe.addrVar {
				addr = v.Value
			}
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%s: %s=%q: %v", name, probe.addrVar, addr, err)
			continue
		}
		want := "http://127.0.0.1:" + port + probe.path
		if s.HealthCheck == nil || !slices.Contains(s.HealthCheck.Test, want) {
			t.Errorf("%s health check: got %v, want it to fetch %s (%s=%s)", name, s.HealthCheck, want, probe.addrVar, addr)
		}
	}

	for name := range fleet {
		s := p.Services[name]
		if oneShot[name] {
			continue
		}
		cfg, err := config.Load(environ(s))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		drain, what := cfg.Automation.ShutdownTimeout, "CEPJOBS_WORKER_SHUTDOWN_TIMEOUT"
		if name == "intake" {
			drain, what = cfg.API.ShutdownTimeout, "CEPJOBS_SHUTDOWN_TIMEOUT"
		}
		if name == "scheduler" {
			drain, what = 5*time.Second, "the scheduler's stop"
		}
		if s.StopGracePeriod == nil {
			t.Errorf("%s: no stop_grace_period (docker's default is 10s; %s is %s)", name, what, drain)
			continue
		}
		if got := time.Duration(*s.StopGracePeriod); got < drain+5*time.Second {
			t.Errorf("%s stop_grace_period %s: want at least %s + 5s (%s)", name, got, drain, what)
		}
	}
}

// TestComposeFleetConfiguration runs each cepjobs service's environment,
// as compose resolves it from env_file and environment, through the
// binaries' own configuration loader.
func TestComposeFleetConfiguration(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	secrets := requiredSecrets(t)
	for name := range fleet {
		s := p.Services[name]
		if len(s.EnvFiles) != 1 || !strings.HasSuffix(s.EnvFiles[0].Path, "/.env") {
			t.Errorf("%s env_file: got %v, want .env", name, s.EnvFiles)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, cap_drop ALL and no-new-privileges; got read_only=%v cap_drop=%v security_opt=%v", name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		cfg, err := config.Load(environ(s))
		if err != nil {
			t.Errorf("%s: its environment fails the binaries' configuration:\n%v", name, err)
			continue
		}
		if u, err := url.Parse(cfg.Store.URL); err != nil || u.Hostname() != "postgres" {
			t.Errorf("%s DATABASE_URL: got %q, want the postgres service", name, config.RedactURL(cfg.Store.URL))
		} else if pw, _ := u.User.Password(); pw != secrets["POSTGRES_PASSWORD"] {
			t.Errorf("%s DATABASE_URL does not carry POSTGRES_PASSWORD", name)
		}
		if u, err := url.Parse(cfg.Redis.URL); err != nil || u.Hostname() != "redis" {
			t.Errorf("%s REDIS_URL: got %q, want the redis service", name, cfg.Redis.URL)
		}
		if cfg.Backup.Endpoint != "minio:9000" || cfg.Backup.AccessKey != secrets["S3_ACCESS_KEY"] || cfg.Backup.SecretKey != secrets["S3_SECRET_KEY"] {
			t.Errorf("%s S3: got endpoint %q access key %q, want minio:9000 and the S3_* of .env", name, cfg.Backup.Endpoint, cfg.Backup.AccessKey)
		}
	}

	intake, err := config.Load(environ(p.Services["intake"]))
	if err != nil {
		t.Fatal(err)
	}
	if got := intake.API.Dashboard.PasswordHash; got != testDashHash(t) {
		t.Errorf("dashboard hash reaching the intake: got %q, want %q (quoting in .env must keep every $)", got, testDashHash(t))
	}
	if len(intake.API.Tokens) != 1 || intake.API.Tokens[0].Secret != testAPIToken {
		t.Errorf("API tokens reaching the intake: got %s", intake.API.Tokens.Redacted())
	}
	if !intake.API.Dashboard.Enabled() {
		t.Error("the dashboard would not be mounted: user or hash missing")
	}
}

func TestComposeRedis(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	r := p.Services["redis"]
	cmd := strings.Join(r.Command, " ")
	if !strings.HasPrefix(cmd, "redis-server /usr/local/etc/redis/redis.conf") {
		t.Errorf("redis command: got %q, want redis-server with deploy/redis.conf", cmd)
	}
	if strings.Contains(cmd, "maxmemory-policy") {
		t.Errorf("redis command overrides maxmemory-policy: %q", cmd)
	}
	mounted := false
	for _, v := range r.Volumes {
		if strings.HasSuffix(v.Source, "/deploy/redis.conf") && v.Target == "/usr/local/etc/redis/redis.conf" && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("redis volumes: got %+v, want ./deploy/redis.conf mounted read-only", r.Volumes)
	}

	conf := map[string][]string{}
	for _, line := range strings.Split(readFile(t, "deploy/redis.conf"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			conf[f[0]] = append(conf[f[0]], strings.Join(f[1:], " "))
		}
	}
	for k, want := range map[string]string{"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "everysec"} {
		if got := conf[k]; len(got) != 1 || got[0] != want {
			t.Errorf("deploy/redis.conf %s: got %v, want %s", k, got, want)
		}
	}
	if !strings.Contains(readFile(t, "docker-compose.yml"), "allkeys-lru silently drops") {
		t.Error("docker-compose.yml lost the comment on why the seed's allkeys-lru is not used")
	}
}

// TestComposeDevelopmentFallback checks that `docker compose up -d redis
// postgres`, with the development block of .env.example uncommented, gives
// make run and make test what they expect: loopback ports and a
// passwordless postgres user.
func TestComposeDevelopmentFallback(t *testing.T) {
	t.Parallel()
	p, err := loadCompose(t, envFile(t, requiredSecrets(t), true), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err = p.WithSelectedServices([]string{"redis", "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ServiceNames(); !slices.Equal(got, []string{"postgres", "redis"}) {
		t.Errorf("docker compose up redis postgres starts %v", got)
	}
	if p.Networks["internal"].Internal {
		t.Error("development block: the internal network is still internal, so no port is published")
	}
	for name, port := range map[string]string{"redis": "6379", "postgres": "5432"} {
		s := p.Services[name]
		if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" || s.Ports[0].Published != port {
			t.Errorf("%s ports: got %+v, want 127.0.0.1:%s", name, s.Ports, port)
		}
	}
	pg := p.Services["postgres"].Environment
	if *pg["POSTGRES_USER"] != "postgres" || *pg["POSTGRES_HOST_AUTH_METHOD"] != "trust" {
		t.Errorf("development postgres: user %q auth %q, want postgres and trust", *pg["POSTGRES_USER"], *pg["POSTGRES_HOST_AUTH_METHOD"])
	}

	// And without the block, nothing of that holds.
	prod := mustLoad(t)
	pg = prod.Services["postgres"].Environment
	if *pg["POSTGRES_HOST_AUTH_METHOD"] != "scram-sha-256" || *pg["POSTGRES_USER"] == "postgres" {
		t.Errorf("production postgres: user %q auth %q, want cepadmin and scram-sha-256", *pg["POSTGRES_USER"], *pg["POSTGRES_HOST_AUTH_METHOD"])
	}
}

var (
	secretKeyRE = regexp.MustCompile(`PASSWORD|SECRET|TOKEN|_KEY|HASH`)
	// A value made only of required-variable references.
	requiredRefRE = regexp.MustCompile(`^(\$\{[A-Z][A-Z0-9_]*:\?[^}]*\})+$`)
	nestedRefRE   = regexp.MustCompile(`\$\{[A-Z][A-Z0-9_]*(:?[-?][^${}]*)?\}`)
)

// TestComposeHasNoLiteralSecrets reads docker-compose.yml without
// interpolation: every secret-looking variable must be a required
// reference to .env, with no default, and no URL may carry a literal
// password.
func TestComposeHasNoLiteralSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o, err := cli.NewProjectOptions([]string{root + "/docker-compose.yml"}, cli.WithWorkingDirectory(dir), cli.WithInterpolation(false))
	if err != nil {
		t.Fatal(err)
	}
	model, err := o.LoadModel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	services, _ := model["services"].(map[string]any)
	checked := 0
	for name, raw := range services {
		svc, _ := raw.(map[string]any)
		env, _ := svc["environment"].(map[string]any)
		for k, v := range env {
			s, _ := v.(string)
			if secretKeyRE.MatchString(k) && !strings.HasSuffix(k, "_ACCESS_KEY") {
				checked++
				if !requiredRefRE.MatchString(s) {
					t.Errorf("%s: %s = %q: want only ${VAR:?message} from .env (no literal, no default)", name, k, s)
				}
			}
			if strings.Contains(s, "://") {
				// Strip references innermost first; what is left is literal.
				lit := s
				for prev := ""; prev != lit; {
					prev, lit = lit, nestedRefRE.ReplaceAllString(lit, "")
				}
				if u, err := url.Parse(lit); err == nil && u.User != nil {
					if _, ok := u.User.Password(); ok {
						t.Errorf("%s: %s carries a literal password: %q", name, k, s)
					}
				}
			}
		}
	}
	if checked < 8 {
		t.Errorf("only %d secret variables found in the services' environment; the check is not looking where the secrets are", checked)
	}
	text := strings.ToLower(readFile(t, "docker-compose.yml"))
	for _, bad := range []string{"minioadmin", "changeme", "admin/admin", ":-postgres}", "password:-", "password: postgres"} {
		if strings.Contains(text, bad) {
			t.Errorf("docker-compose.yml contains %q", bad)
		}
	}
}

// TestComposeImagesArePinned: third-party images carry a version, never
// latest; ours carry IMAGE_TAG.
func TestComposeImagesArePinned(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	for _, s := range p.Services {
		i := strings.LastIndex(s.Image, ":")
		if i < 0 || strings.Contains(s.Image[i:], "/") {
			t.Errorf("%s image %q has no tag", s.Name, s.Image)
			continue
		}
		tag := s.Image[i+1:]
		if tag == "latest" || tag == "" {
			t.Errorf("%s image %q: pin a version", s.Name, s.Image)
		}
		if _, ours := fleet[s.Name]; ours {
			role := s.Name
			if role == "cepjobs" {
				role = "cli"
			}
			if want := "cepjobs-" + role + ":dev"; s.Image != want {
				t.Errorf("%s image: got %q, want %q (${IMAGE_PREFIX}-<role>:${IMAGE_TAG})", s.Name, s.Image, want)
			}
		}
	}
}
