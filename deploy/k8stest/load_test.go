package k8stest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	k8sDir        = "../k8s"
	baseDir       = "../k8s/base"
	productionDir = "../k8s/overlays/production"
	secretExample = "../k8s/base/secret.example.yaml"
	moduleRoot    = "../.."
)

// manifests is a set of decoded objects, by kind and name.
type manifests struct {
	source        string
	deployments   map[string]*appsv1.Deployment
	services      map[string]*corev1.Service
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	pdbs          map[string]*policyv1.PodDisruptionBudget
	scaledObjects map[string]*ScaledObject
	triggerAuths  map[string]*TriggerAuthentication
}

func newManifests(source string) *manifests {
	return &manifests{
		source:        source,
		deployments:   map[string]*appsv1.Deployment{},
		services:      map[string]*corev1.Service{},
		configMaps:    map[string]*corev1.ConfigMap{},
		secrets:       map[string]*corev1.Secret{},
		pdbs:          map[string]*policyv1.PodDisruptionBudget{},
		scaledObjects: map[string]*ScaledObject{},
		triggerAuths:  map[string]*TriggerAuthentication{},
	}
}

// add decodes every YAML document of data strictly (unknown or duplicate
// fields are errors) into the API type of its kind.
func (m *manifests) add(name string, data []byte) error {
	docs, err := splitDocs(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	for i, doc := range docs {
		if err := m.addDoc(doc); err != nil {
			errs = append(errs, fmt.Errorf("%s, document %d: %w", name, i+1, err))
		}
	}
	return errors.Join(errs...)
}

func (m *manifests) addDoc(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	switch tm.Kind {
	case "CronJob", "Job":
		return fmt.Errorf("a %s: the scheduler Deployment owns the schedule (slot TaskIDs, catch-up); cepjobs never uses Kubernetes jobs", tm.Kind)
	}
	switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
	case "apps/v1 Deployment":
		return put(m.deployments, doc)
	case "v1 Service":
		return put(m.services, doc)
	case "v1 ConfigMap":
		return put(m.configMaps, doc)
	case "v1 Secret":
		return put(m.secrets, doc)
	case "policy/v1 PodDisruptionBudget":
		return put(m.pdbs, doc)
	case "keda.sh/v1alpha1 ScaledObject":
		return put(m.scaledObjects, doc)
	case "keda.sh/v1alpha1 TriggerAuthentication":
		return put(m.triggerAuths, doc)
	default:
		return fmt.Errorf("unexpected kind %q: add it to the test (and decode it strictly) if it belongs", gvk)
	}
}

// named is what put needs of an API object.
type named interface{ GetName() string }

func put[T any, PT interface {
	*T
	named
}](into map[string]PT, doc []byte) error {
	obj := PT(new(T))
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return err
	}
	name := obj.GetName()
	if name == "" {
		return errors.New("no metadata.name")
	}
	if _, dup := into[name]; dup {
		return fmt.Errorf("two objects of the same kind named %q", name)
	}
	into[name] = obj
	return nil
}

// splitDocs splits a multi-document YAML stream, dropping documents that
// hold only comments.
func splitDocs(data []byte) ([][]byte, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
}

// kustomizeMu serialises kustomize builds: kyaml keeps its OpenAPI schema
// in package globals that it fills lazily without a lock (a data race the
// race detector caught between two parallel tests' builds).
var kustomizeMu sync.Mutex

// render builds a kustomization the way `kubectl apply -k` does and decodes
// the result.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	kustomizeMu.Lock()
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		kustomizeMu.Unlock()
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	kustomizeMu.Unlock()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := newManifests(dir)
	if err := m.add("kustomize build "+dir, out); err != nil {
		t.Fatal(err)
	}
	return m
}

// yamlFiles lists every YAML file under dir.
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func isKustomization(path string) bool {
	switch filepath.Base(path) {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

func readKustomization(t *testing.T, dir string) types.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return k
}

func readSecretExample(t *testing.T) *manifests {
	t.Helper()
	data, err := os.ReadFile(secretExample)
	if err != nil {
		t.Fatal(err)
	}
	m := newManifests(secretExample)
	if err := m.add(secretExample, data); err != nil {
		t.Fatal(err)
	}
	return m
}
