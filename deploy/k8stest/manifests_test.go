package k8stest

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cepcomunicacion/cepjobs/internal/config"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// workerQueues is what each worker serves, as internal/fleet assembles them
// (automation.go, llm.go, stats.go). Its ScaledObject must watch exactly
// these pending lists.
var workerQueues = map[string][]string{
	"worker-automation": {tasks.QueueCritical, tasks.QueueDefault},
	"worker-llm":        {tasks.QueueLLM},
	"worker-stats":      {tasks.QueueBackup, tasks.QueueStats, tasks.QueueLow},
}

// metricsServerShutdown is how long a worker gives its metrics server after
// asynq has shut down (fleet.Worker.Run).
const metricsServerShutdown = 5 * time.Second

const (
	configMapName = "cepjobs-config"
	secretName    = "cepjobs-secrets"
	kedaSecret    = "cepjobs-keda-redis"
)

// TestEveryManifestDecodesStrictly decodes every YAML file under deploy/k8s
// into its API type, unknown and duplicate fields being errors; the
// kustomization files into kustomize's own type.
func TestEveryManifestDecodesStrictly(t *testing.T) {
	t.Parallel()
	files := yamlFiles(t, k8sDir)
	if len(files) == 0 {
		t.Fatal("no manifests under deploy/k8s")
	}
	for _, f := range files {
		if isKustomization(f) {
			readKustomization(t, filepath.Dir(f))
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := newManifests(f).add(f, data); err != nil {
			t.Error(err)
		}
	}
}

// TestSecretsNeverApplied keeps the placeholder Secrets out of every
// kustomization: `kubectl apply -k` must not overwrite the real ones.
func TestSecretsNeverApplied(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{baseDir, productionDir} {
		k := readKustomization(t, dir)
		for _, r := range k.Resources {
			if strings.Contains(r, "secret") {
				t.Errorf("%s: resource %q: Secrets are created with kubectl create secret, never applied from the repo", dir, r)
			}
		}
		if len(k.SecretGenerator) > 0 {
			t.Errorf("%s: has a secretGenerator: Secrets are created by hand (deploy/k8s/README.md)", dir)
		}
		for _, m := range []*manifests{render(t, dir)} {
			if len(m.secrets) > 0 {
				t.Errorf("%s renders Secrets %v", dir, slices.Sorted(maps.Keys(m.secrets)))
			}
		}
	}
	ex := readSecretExample(t)
	for _, name := range []string{secretName, kedaSecret} {
		s, ok := ex.secrets[name]
		if !ok {
			t.Errorf("%s: no Secret %s", secretExample, name)
			continue
		}
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: use stringData placeholders, not data", name)
		}
		for k, v := range s.StringData {
			if strings.HasPrefix(k, "S3_") || k == "CEPJOBS_DASHBOARD_USER" {
				continue
			}
			if !strings.Contains(v, "CHANGE_ME") && !strings.Contains(v, "CHANGE.ME") && k != "address" {
				t.Errorf("Secret %s: %s = %q does not look like a placeholder (want CHANGE_ME in it)", name, k, v)
			}
		}
	}
}

func TestBase(t *testing.T) {
	t.Parallel()
	checkFleet(t, render(t, baseDir), readSecretExample(t))
}

func TestProduction(t *testing.T) {
	t.Parallel()
	m := render(t, productionDir)
	checkFleet(t, m, readSecretExample(t))
	for name, d := range m.deployments {
		if d.Namespace != "cepjobs" {
			t.Errorf("production Deployment %s: namespace %q, want cepjobs", name, d.Namespace)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if tag := imageTag(c.Image); tag == "" || tag == "latest" || tag == "dev" {
				t.Errorf("production Deployment %s: image %q: pin a release tag or digest", name, c.Image)
			}
		}
	}
}

// checkFleet holds what every rendering of the fleet must satisfy.
func checkFleet(t *testing.T, m, secrets *manifests) {
	t.Helper()
	want := []string{"intake", "scheduler", "worker-automation", "worker-llm", "worker-stats"}
	if diff := cmp.Diff(want, slices.Sorted(maps.Keys(m.deployments))); diff != "" {
		t.Fatalf("%s: Deployments (-want +got):\n%s", m.source, diff)
	}
	cfg := loadConfig(t, m, secrets)

	for name, d := range m.deployments {
		checkDeployment(t, m, name, d)
	}

	intake := m.deployments["intake"]
	c := container(t, intake)
	httpPort := addrPort(t, "CEPJOBS_HTTP_ADDR", cfg.API.Addr)
	checkProbe(t, m.source+": intake readiness", c, c.ReadinessProbe, "/readyz", httpPort)
	checkProbe(t, m.source+": intake liveness", c, c.LivenessProbe, "/healthz", httpPort)
	checkScrape(t, intake, httpPort)
	if r := replicas(intake); r < 2 {
		t.Errorf("%s: intake has %d replicas, want at least 2", m.source, r)
	}
	stop := preStopSleep(c) + cfg.API.ShutdownTimeout
	if grace := gracePeriod(intake); grace <= stop {
		t.Errorf("%s: intake terminationGracePeriodSeconds %s, want more than preStop + CEPJOBS_SHUTDOWN_TIMEOUT = %s", m.source, grace, stop)
	}

	if r := replicas(m.deployments["scheduler"]); r != 2 {
		t.Errorf("%s: scheduler has %d replicas, want 2 (slot TaskIDs make the second a standby, not a double firing)", m.source, r)
	}

	metricsAddr := map[string]string{
		"worker-automation": cfg.Automation.MetricsAddr,
		"worker-llm":        cfg.LLMWorker.MetricsAddr,
		"worker-stats":      cfg.Stats.MetricsAddr,
	}
	for name, a := range metricsAddr {
		d := m.deployments[name]
		c := container(t, d)
		port := addrPort(t, name+" metrics address", a)
		checkProbe(t, m.source+": "+name+" liveness", c, c.LivenessProbe, "/healthz", port)
		checkScrape(t, d, port)
		stop := cfg.Automation.ShutdownTimeout + metricsServerShutdown
		if grace := gracePeriod(d); grace <= stop {
			t.Errorf("%s: %s terminationGracePeriodSeconds %s, want more than CEPJOBS_WORKER_SHUTDOWN_TIMEOUT + %s = %s", m.source, name, grace, metricsServerShutdown, stop)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("%s: %s sets spec.replicas: leave it to its ScaledObject, or every apply resets KEDA's count", m.source, name)
		}
	}
	if lim := container(t, m.deployments["worker-stats"]).Resources.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("256Mi")) < 0 {
		t.Errorf("%s: worker-stats memory limit %s, want at least 256Mi (a backup peaks at 72 MiB plus pg_dump)", m.source, lim.String())
	}

	checkService(t, m)
	checkPDBs(t, m)
	checkScaling(t, m, secrets, cfg)
}

func checkDeployment(t *testing.T, m *manifests, name string, d *appsv1.Deployment) {
	t.Helper()
	where := m.source + ": Deployment " + name
	tpl := d.Spec.Template
	if d.Spec.Selector == nil || !selects(d.Spec.Selector, tpl.Labels) {
		t.Errorf("%s: selector does not match its pod template labels", where)
	}
	if tpl.Labels["app.kubernetes.io/name"] != name {
		t.Errorf("%s: pod label app.kubernetes.io/name = %q, want %q (alerts group by it)", where, tpl.Labels["app.kubernetes.io/name"], name)
	}
	ps := tpl.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", where)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext.runAsUser is not a non-zero uid", where)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken is not false (nothing here talks to the API server)", where)
	}
	if ps.TerminationGracePeriodSeconds == nil {
		t.Errorf("%s: no terminationGracePeriodSeconds", where)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", where, len(ps.Containers))
	}
	c := ps.Containers[0]
	// One image per role, whose ENTRYPOINT is the role's binary: the image
	// must be the one built for this Deployment.
	if repo := imageRepo(c.Image); !strings.HasSuffix(repo, "/cepjobs-"+name) {
		t.Errorf("%s: image %q, want …/cepjobs-%s (deploy/Dockerfile target %s)", where, c.Image, name, name)
	}
	if len(c.Command) > 0 {
		t.Errorf("%s: command %q overrides the image's ENTRYPOINT", where, c.Command)
	}
	if !dockerTargets(t)[name] {
		t.Errorf("%s: deploy/Dockerfile has no target %s", where, name)
	}
	if _, err := os.Stat(filepath.Join(moduleRoot, "cmd", name)); err != nil {
		t.Errorf("%s: no cmd/%s in the module", where, name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		switch {
		case !hasReq || req.IsZero():
			t.Errorf("%s: no %s request", where, r)
		case !hasLim || lim.IsZero():
			t.Errorf("%s: no %s limit", where, r)
		case lim.Cmp(req) < 0:
			t.Errorf("%s: %s limit %s below the request %s", where, r, lim.String(), req.String())
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: container has no securityContext", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Errorf("%s: capabilities do not drop ALL", where)
	case sc.RunAsUser != nil && *sc.RunAsUser == 0:
		t.Errorf("%s: container runs as uid 0", where)
	}
	if !tmpIsEmptyDir(ps, c) {
		t.Errorf("%s: /tmp is not an emptyDir mount (the root filesystem is read-only)", where)
	}
	var cm, sec bool
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil && e.ConfigMapRef.Name == configMapName {
			cm = true
		}
		if e.SecretRef != nil && e.SecretRef.Name == secretName {
			sec = true
		}
	}
	if !cm || !sec {
		t.Errorf("%s: envFrom must take ConfigMap %s and Secret %s", where, configMapName, secretName)
	}
}

// loadConfig runs the ConfigMap plus the example Secret through
// internal/config, exactly as every binary reads its environment: an
// unknown variable, a bad duration or a malformed URL fails here.
func loadConfig(t *testing.T, m, secrets *manifests) config.Config {
	t.Helper()
	cm, ok := m.configMaps[configMapName]
	if !ok {
		t.Fatalf("%s: no ConfigMap %s", m.source, configMapName)
	}
	sec, ok := secrets.secrets[secretName]
	if !ok {
		t.Fatalf("%s: no Secret %s", secretExample, secretName)
	}
	env := map[string]string{}
	for k, v := range cm.Data {
		env[k] = v
	}
	for k, v := range sec.StringData {
		if _, dup := env[k]; dup {
			t.Errorf("%s is both in ConfigMap %s and Secret %s", k, configMapName, secretName)
		}
		env[k] = v
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	cfg, err := config.Load(environ)
	if err != nil {
		t.Fatalf("%s: the ConfigMap and the Secret's placeholders do not make a valid configuration: %v", m.source, err)
	}
	known := map[string]bool{}
	for _, v := range cfg.Vars() {
		known[v.Name] = true
	}
	for k := range env {
		if !known[k] {
			t.Errorf("%s: %s is no variable any binary reads", m.source, k)
		}
	}
	// The values the grace periods and probes are checked against must be
	// visible next to them, not left to defaults.
	for _, k := range []string{"CEPJOBS_HTTP_ADDR", "CEPJOBS_SHUTDOWN_TIMEOUT", "CEPJOBS_WORKER_SHUTDOWN_TIMEOUT",
		"CEPJOBS_AUTOMATION_METRICS_ADDR", "CEPJOBS_LLM_METRICS_ADDR", "CEPJOBS_STATS_METRICS_ADDR"} {
		if _, ok := cm.Data[k]; !ok {
			t.Errorf("%s: ConfigMap %s does not set %s", m.source, configMapName, k)
		}
	}
	return cfg
}

func checkService(t *testing.T, m *manifests) {
	t.Helper()
	svc, ok := m.services["intake"]
	if !ok {
		t.Errorf("%s: no Service intake", m.source)
		return
	}
	if len(m.services) != 1 {
		t.Errorf("%s: Services %v, want only intake", m.source, slices.Sorted(maps.Keys(m.services)))
	}
	for name, d := range m.deployments {
		sel := &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}
		if got, want := selects(sel, d.Spec.Template.Labels), name == "intake"; got != want {
			t.Errorf("%s: Service intake selects Deployment %s: %v, want %v", m.source, name, got, want)
		}
	}
	c := container(t, m.deployments["intake"])
	for _, p := range svc.Spec.Ports {
		if containerPort(c, p.TargetPort) == 0 {
			t.Errorf("%s: Service intake port %d targets %s, which the intake container does not expose", m.source, p.Port, p.TargetPort.String())
		}
	}
}

func checkPDBs(t *testing.T, m *manifests) {
	t.Helper()
	covered := map[string][]string{}
	for name, pdb := range m.pdbs {
		var hits []string
		for dn, d := range m.deployments {
			if pdb.Spec.Selector != nil && selects(pdb.Spec.Selector, d.Spec.Template.Labels) {
				hits = append(hits, dn)
				covered[dn] = append(covered[dn], name)
			}
		}
		if len(hits) != 1 {
			t.Errorf("%s: PodDisruptionBudget %s selects Deployments %v, want exactly one", m.source, name, hits)
			continue
		}
		d := m.deployments[hits[0]]
		if pdb.Spec.MinAvailable != nil {
			if d.Spec.Replicas == nil {
				t.Errorf("%s: PodDisruptionBudget %s uses minAvailable on autoscaled %s: at one replica it blocks every node drain; use maxUnavailable", m.source, name, hits[0])
			} else if pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
				t.Errorf("%s: PodDisruptionBudget %s: minAvailable %s with %d replicas blocks every node drain", m.source, name, pdb.Spec.MinAvailable.String(), *d.Spec.Replicas)
			}
		}
	}
	for name := range m.deployments {
		if n := len(covered[name]); n != 1 {
			t.Errorf("%s: Deployment %s has %d PodDisruptionBudgets, want 1", m.source, name, n)
		}
	}
}

// checkScaling: one ScaledObject per worker, on an existing Deployment, with
// one redis trigger per queue the worker serves, authenticated through a
// TriggerAuthentication whose Secret points at REDIS_URL's server.
func checkScaling(t *testing.T, m, secrets *manifests, cfg config.Config) {
	t.Helper()
	opt, err := redisconn.Parse(cfg.Redis.URL)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	single, ok := opt.(asynq.RedisClientOpt)
	if !ok {
		t.Fatalf("the example REDIS_URL is %T: the redis trigger type fits a single server only (use redis-sentinel or redis-cluster triggers otherwise)", opt)
	}
	scaled := map[string]string{} // deployment → ScaledObject
	auths := map[AuthenticationRef][]string{}
	var allQueues []string
	for name, so := range m.scaledObjects {
		where := m.source + ": ScaledObject " + name
		ref := so.Spec.ScaleTargetRef
		if ref == nil || ref.Name == "" {
			t.Errorf("%s: no scaleTargetRef.name", where)
			continue
		}
		if (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
			t.Errorf("%s: scales %s %s, want an apps/v1 Deployment", where, ref.APIVersion, ref.Kind)
		}
		if _, ok := m.deployments[ref.Name]; !ok {
			t.Errorf("%s: targets Deployment %q, which does not exist", where, ref.Name)
		}
		if prev, dup := scaled[ref.Name]; dup {
			t.Errorf("%s: %s is already scaled by %s", where, ref.Name, prev)
		}
		scaled[ref.Name] = name
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 1 {
			t.Errorf("%s: minReplicaCount %v, want 1", where, ptrVal(so.Spec.MinReplicaCount))
		}
		if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 2 {
			t.Errorf("%s: maxReplicaCount %v, want at least 2", where, ptrVal(so.Spec.MaxReplicaCount))
		}
		var lists []string
		for i, tr := range so.Spec.Triggers {
			tw := fmt.Sprintf("%s trigger %d", where, i+1)
			if tr.Type != "redis" {
				t.Errorf("%s: type %q, want redis", tw, tr.Type)
			}
			for k := range tr.Metadata {
				switch k {
				case "listName", "listLength", "activationListLength", "databaseIndex", "enableTLS", "unsafeSsl":
				case "address", "host", "port", "password", "username":
					t.Errorf("%s: %s inline; it comes from the TriggerAuthentication", tw, k)
				default:
					t.Errorf("%s: unknown redis scaler parameter %q", tw, k)
				}
			}
			lists = append(lists, tr.Metadata["listName"])
			if n, err := strconv.Atoi(tr.Metadata["listLength"]); err != nil || n < 1 {
				t.Errorf("%s: listLength %q, want a positive integer", tw, tr.Metadata["listLength"])
			}
			if db := tr.Metadata["databaseIndex"]; db != strconv.Itoa(single.DB) {
				t.Errorf("%s: databaseIndex %q, but REDIS_URL uses DB %d", tw, db, single.DB)
			}
			if tr.AuthenticationRef == nil {
				t.Errorf("%s: no authenticationRef", tw)
				continue
			}
			auths[*tr.AuthenticationRef] = append(auths[*tr.AuthenticationRef], tw)
		}
		var wantLists []string
		for _, q := range workerQueues[ref.Name] {
			wantLists = append(wantLists, "asynq:{"+q+"}:pending")
			allQueues = append(allQueues, q)
		}
		slices.Sort(lists)
		slices.Sort(wantLists)
		if diff := cmp.Diff(wantLists, lists); diff != "" {
			t.Errorf("%s: watched lists (-want +got), one trigger per queue %s serves:\n%s", where, ref.Name, diff)
		}
	}
	for w := range workerQueues {
		if _, ok := scaled[w]; !ok {
			t.Errorf("%s: no ScaledObject for %s", m.source, w)
		}
	}
	for name := range m.deployments {
		if _, ok := workerQueues[name]; !ok && scaled[name] != "" {
			t.Errorf("%s: %s is autoscaled, but only workers are", m.source, name)
		}
	}
	for ref, users := range auths {
		checkTriggerAuth(t, m, secrets, users[0], ref, single.Addr)
	}
	slices.Sort(allQueues)
	if diff := cmp.Diff(slices.Sorted(slices.Values(tasks.Queues)), allQueues); diff != "" {
		t.Errorf("%s: queues with a scaling trigger (-tasks.Queues +triggers):\n%s", m.source, diff)
	}
}

func checkTriggerAuth(t *testing.T, m, secrets *manifests, where string, ref AuthenticationRef, redisAddr string) {
	t.Helper()
	if ref.Kind != "" && ref.Kind != "TriggerAuthentication" {
		t.Errorf("%s: authenticationRef kind %q, want TriggerAuthentication", where, ref.Kind)
	}
	ta, ok := m.triggerAuths[ref.Name]
	if !ok {
		t.Errorf("%s: TriggerAuthentication %q does not exist", where, ref.Name)
		return
	}
	params := map[string]string{}
	for _, r := range ta.Spec.SecretTargetRef {
		s, ok := secrets.secrets[r.Name]
		if !ok {
			t.Errorf("TriggerAuthentication %s: Secret %q is not in %s", ta.Name, r.Name, secretExample)
			continue
		}
		v, ok := s.StringData[r.Key]
		if !ok {
			t.Errorf("TriggerAuthentication %s: Secret %s has no key %q", ta.Name, r.Name, r.Key)
		}
		params[r.Parameter] = v
	}
	if params["address"] != redisAddr {
		t.Errorf("TriggerAuthentication %s: address %q, but REDIS_URL points at %q", ta.Name, params["address"], redisAddr)
	}
	if _, ok := params["password"]; !ok {
		t.Errorf("TriggerAuthentication %s: no password parameter", ta.Name)
	}
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if len(d.Spec.Template.Spec.Containers) == 0 {
		t.Fatalf("Deployment %s has no container", d.Name)
	}
	return d.Spec.Template.Spec.Containers[0]
}

func checkProbe(t *testing.T, what string, c corev1.Container, p *corev1.Probe, path string, port int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an httpGet probe on %s", what, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: path %q, want %q", what, p.HTTPGet.Path, path)
	}
	if got := containerPort(c, p.HTTPGet.Port); got != port {
		t.Errorf("%s: port %s is %d, want %d (from the ConfigMap)", what, p.HTTPGet.Port.String(), got, port)
	}
}

func checkScrape(t *testing.T, d *appsv1.Deployment, port int) {
	t.Helper()
	a := d.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(port) {
		t.Errorf("Deployment %s: scrape annotations %v, want scrape true, path /metrics, port %d", d.Name, a, port)
	}
	if containerPort(container(t, d), intstr.FromInt32(int32(port))) == 0 {
		t.Errorf("Deployment %s: port %d is not a container port", d.Name, port)
	}
}

// containerPort resolves a named or numbered port of c (0: none).
func containerPort(c corev1.Container, p intstr.IntOrString) int {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func addrPort(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n == 0 {
		t.Fatalf("%s %q: want a fixed port", what, addr)
	}
	return n
}

func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if len(sel.MatchExpressions) > 0 || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func tmpIsEmptyDir(ps corev1.PodSpec, c corev1.Container) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != "/tmp" {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name == vm.Name && v.EmptyDir != nil {
				return true
			}
		}
	}
	return false
}

func replicas(d *appsv1.Deployment) int {
	if d.Spec.Replicas == nil {
		return 1
	}
	return int(*d.Spec.Replicas)
}

func gracePeriod(d *appsv1.Deployment) time.Duration {
	if d.Spec.Template.Spec.TerminationGracePeriodSeconds == nil {
		return 30 * time.Second // the Kubernetes default
	}
	return time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
}

func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// imageRepo is an image reference without its tag or digest.
func imageRepo(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon]
	}
	return image
}

// dockerTargets are the build targets of deploy/Dockerfile.
func dockerTargets(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moduleRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatalf("deploy/Dockerfile: %v", err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?mi)^FROM\s+\S+\s+AS\s+(\S+)\s*$`).FindAllStringSubmatch(string(data), -1) {
		targets[m[1]] = true
	}
	return targets
}

// imageTag is the tag of an image reference, or the digest.
func imageTag(image string) string {
	if _, digest, ok := strings.Cut(image, "@"); ok {
		return digest
	}
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	_, tag, _ := strings.Cut(name, ":")
	return tag
}

func ptrVal(p *int32) any {
	if p == nil {
		return "unset"
	}
	return *p
}
