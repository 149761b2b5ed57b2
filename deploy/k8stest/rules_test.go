package k8stest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	rulesFile     = "../prometheus/cepjobs-rules.yml"
	rulesTestFile = "../prometheus/cepjobs-rules.test.yml"
	scrapeFile    = "../prometheus/scrape-config.yml"
	runbookDoc    = "docs/operations.md"
	asynqXModule  = "github.com/hibiken/asynq/x"
)

// builtinMetrics are series Prometheus makes itself for every target.
var builtinMetrics = []string{"up"}

// ruleFile mirrors Prometheus' rule file format (model/rulefmt), decoded
// strictly. rulefmt itself would pull the PromQL engine, the TSDB and
// OpenTelemetry into go.mod; the parser alone is light.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name        string            `json:"name"`
	Interval    string            `json:"interval,omitempty"`
	QueryOffset string            `json:"query_offset,omitempty"`
	Limit       int               `json:"limit,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Rules       []rule            `json:"rules"`
}

type rule struct {
	Record        string            `json:"record,omitempty"`
	Alert         string            `json:"alert,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// scrapeConfigFile is the subset of prometheus.yml that scrape-config.yml
// uses, decoded strictly.
type scrapeConfigFile struct {
	ScrapeConfigs []struct {
		JobName             string `json:"job_name"`
		ScrapeInterval      string `json:"scrape_interval,omitempty"`
		KubernetesSDConfigs []struct {
			Role       string `json:"role"`
			Namespaces *struct {
				Names []string `json:"names"`
			} `json:"namespaces,omitempty"`
		} `json:"kubernetes_sd_configs"`
		RelabelConfigs []struct {
			SourceLabels []string `json:"source_labels,omitempty"`
			Separator    string   `json:"separator,omitempty"`
			Regex        string   `json:"regex,omitempty"`
			TargetLabel  string   `json:"target_label,omitempty"`
			Replacement  string   `json:"replacement,omitempty"`
			Action       string   `json:"action,omitempty"`
		} `json:"relabel_configs"`
	} `json:"scrape_configs"`
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(data, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	job := scrapeJob(t)
	known := knownMetrics(t)
	deployments := map[string]bool{}
	for name := range render(t, baseDir).deployments {
		deployments[name] = true
	}
	src := goSource(t)
	states := asynqStates(t)
	p := parser.NewParser(parser.Options{})

	seen := map[string]bool{}
	var anchors []string
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: want a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: rule %q: only alerting rules belong here", g.Name, r.Expr)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: defined twice (its runbook anchor would be ambiguous)", where)
			}
			seen[r.Alert] = true
			for _, d := range []string{r.For, r.KeepFiringFor} {
				if d == "" {
					continue
				}
				if _, err := model.ParseDuration(d); err != nil {
					t.Errorf("%s: duration %q: %v", where, d, err)
				}
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", where, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			anchor := "alert-" + strings.ToLower(r.Alert)
			anchors = append(anchors, anchor)
			if u := r.Annotations["runbook_url"]; !strings.HasSuffix(u, runbookDoc+"#"+anchor) {
				t.Errorf("%s: runbook_url %q, want …%s#%s", where, u, runbookDoc, anchor)
			}
			for name, text := range r.Annotations {
				if err := parseAlertTemplate(text); err != nil {
					t.Errorf("%s: annotation %s: %v", where, name, err)
				}
			}

			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: expr does not parse as PromQL: %v\n%s", where, err, r.Expr)
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				if !known[metricBase(vs.Name, known)] {
					t.Errorf("%s: metric %q is exported by neither our code nor %s", where, vs.Name, asynqXModule)
				}
				for _, m := range vs.LabelMatchers {
					checkMatcher(t, where, m, job, deployments, states, src)
				}
				if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return m.Name == "job" }) {
					t.Errorf("%s: selector %s has no job matcher: it would match other jobs' series", where, vs.String())
				}
				return nil
			})
		}
	}
	for _, want := range []string{"BackupStale", "BackupFailing", "ArchivedTasksGrowing", "LeadQueueLatencyHigh",
		"OutboxStuck", "OutboxBacklogHigh", "WorkerDown", "LLMBudgetExhausted"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
	checkRunbookAnchors(t, anchors)

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not on PATH: checked with the PromQL parser only, unit tests not run")
		return
	}
	for _, args := range [][]string{{"check", "rules", filepath.Base(rulesFile)}, {"test", "rules", filepath.Base(rulesTestFile)}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// checkMatcher keeps label values honest: a queue exists, a task state is
// one asynq/x reports, an app is a Deployment, the job is the scrape job,
// and any other value appears as a string literal in our code.
func checkMatcher(t *testing.T, where string, m *labels.Matcher, job string, deployments map[string]bool, states map[string]bool, src string) {
	t.Helper()
	if m.Name == model.MetricNameLabel {
		return
	}
	values := []string{m.Value}
	regex := m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp
	if regex {
		if !regexp.MustCompile(`^[a-z|-]+$`).MatchString(m.Value) {
			// A pattern: it must match something real.
			re := regexp.MustCompile("^(?:" + m.Value + ")$")
			if m.Name == "app" && !anyMatch(re, deployments) {
				t.Errorf("%s: app=~%q matches no Deployment", where, m.Value)
			}
			return
		}
		values = strings.Split(m.Value, "|")
	}
	for _, v := range values {
		var ok bool
		switch m.Name {
		case "job":
			ok = v == job
		case "app":
			ok = deployments[v]
		case "queue":
			ok = slices.Contains(tasks.Queues, v)
		case "state":
			ok = states[v]
		case "namespace", "pod":
			ok = true
		default:
			ok = strings.Contains(src, `"`+v+`"`)
		}
		if !ok {
			t.Errorf("%s: label %s=%q names nothing that exists", where, m.Name, v)
		}
	}
}

func anyMatch(re *regexp.Regexp, set map[string]bool) bool {
	for k := range set {
		if re.MatchString(k) {
			return true
		}
	}
	return false
}

// parseAlertTemplate parses an annotation the way Prometheus expands it:
// text/template with $labels and $value defined and its function names.
func parseAlertTemplate(text string) error {
	stub := func(...any) any { return nil }
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage",
		"humanizeTimestamp", "title", "toUpper", "toLower", "first", "label", "value", "sortByLabel",
		"reReplaceAll", "match", "query", "stripPort", "stripDomain", "args", "safeHtml", "pathPrefix",
		"externalURL", "graphLink", "tableLink", "parseDuration", "toTime", "toDuration", "now", "strvalue"} {
		funcs[f] = stub
	}
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	_, err := template.New("annotation").Funcs(funcs).Parse(defs + text)
	return err
}

// checkRunbookAnchors fails for every alert whose runbook anchor
// docs/operations.md lacks: a dead link in a page at 3 a.m.
func checkRunbookAnchors(t *testing.T, anchors []string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(moduleRoot, runbookDoc))
	if err != nil {
		t.Logf("%s not found: the runbook anchors it needs are %s", runbookDoc, strings.Join(anchors, ", "))
		return
	}
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+\s+(.+?)\s*$`).FindAllStringSubmatch(string(doc), -1) {
		have[githubSlug(m[1])] = true
	}
	for _, m := range regexp.MustCompile(`(?:id|name)="([^"]+)"`).FindAllStringSubmatch(string(doc), -1) {
		have[m[1]] = true
	}
	var missing []string
	for _, a := range anchors {
		if !have[a] {
			missing = append(missing, "#"+a)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s has no heading (### Alert: Name) or id for runbook anchors %s", runbookDoc, strings.Join(missing, ", "))
	}
}

// githubSlug is the anchor GitHub gives a Markdown heading.
func githubSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestScrapeConfig(t *testing.T) {
	t.Parallel()
	job := scrapeJob(t)
	if job != "cepjobs" {
		t.Errorf("scrape job %q, want cepjobs (the rules select on it)", job)
	}
}

// scrapeJob decodes scrape-config.yml strictly, checks it scrapes the
// production namespace and labels series with app, and returns its job name.
func scrapeJob(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(scrapeFile)
	if err != nil {
		t.Fatal(err)
	}
	var sf scrapeConfigFile
	if err := yaml.UnmarshalStrict(data, &sf); err != nil {
		t.Fatalf("%s: %v", scrapeFile, err)
	}
	if len(sf.ScrapeConfigs) != 1 {
		t.Fatalf("%s: %d scrape configs, want 1", scrapeFile, len(sf.ScrapeConfigs))
	}
	sc := sf.ScrapeConfigs[0]
	ns := readKustomization(t, productionDir).Namespace
	var scrapesNS bool
	for _, sd := range sc.KubernetesSDConfigs {
		if sd.Role != "pod" {
			t.Errorf("%s: role %q, want pod (the scrape annotations are on pod templates)", scrapeFile, sd.Role)
		}
		if sd.Namespaces != nil && slices.Contains(sd.Namespaces.Names, ns) {
			scrapesNS = true
		}
	}
	if !scrapesNS {
		t.Errorf("%s: does not scrape namespace %q of the production overlay", scrapeFile, ns)
	}
	var app bool
	for _, r := range sc.RelabelConfigs {
		if r.Regex != "" {
			if _, err := regexp.Compile(r.Regex); err != nil {
				t.Errorf("%s: regex %q: %v", scrapeFile, r.Regex, err)
			}
		}
		if r.TargetLabel == "app" && slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_label_app_kubernetes_io_name"}) {
			app = true
		}
	}
	if !app {
		t.Errorf("%s: no relabelling of app.kubernetes.io/name into app (the rules group by app)", scrapeFile)
	}
	return sc.JobName
}

// knownMetrics lists the metric names our code and asynq/x export, found
// the way a reviewer would grep for them.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, m := range builtinMetrics {
		known[m] = true
	}
	for _, m := range regexp.MustCompile(`"(cepjobs_[a-z0-9_]+)"`).FindAllStringSubmatch(goSource(t), -1) {
		known[m[1]] = true
	}
	x := asynqXMetrics(t)
	ns := regexp.MustCompile(`const namespace = "([a-z_]+)"`).FindStringSubmatch(x)
	if ns == nil {
		t.Fatalf("%s/metrics: no namespace constant: has the collector changed?", asynqXModule)
	}
	names := regexp.MustCompile(`BuildFQName\(namespace, "", "([a-z0-9_]+)"\)`).FindAllStringSubmatch(x, -1)
	if len(names) == 0 {
		t.Fatalf("%s/metrics: no metric names found", asynqXModule)
	}
	for _, m := range names {
		known[ns[1]+"_"+m[1]] = true
	}
	return known
}

// metricBase maps a histogram or summary series to the metric that
// exports it.
func metricBase(name string, known map[string]bool) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok && known[b] {
			return b
		}
	}
	return name
}

// asynqStates are the state label values asynq/x reports.
func asynqStates(t *testing.T) map[string]bool {
	t.Helper()
	states := map[string]bool{}
	for _, m := range regexp.MustCompile(`info\.Queue,\s*"([a-z]+)",`).FindAllStringSubmatch(asynqXMetrics(t), -1) {
		states[m[1]] = true
	}
	if !states["archived"] {
		t.Fatalf("%s/metrics: found states %v, want archived among them", asynqXModule, states)
	}
	return states
}

func asynqXMetrics(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", asynqXModule)
	cmd.Dir = moduleRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", asynqXModule, err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "metrics", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// goSource is every non-test Go file of the module, concatenated.
func goSource(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(moduleRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != moduleRoot || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
