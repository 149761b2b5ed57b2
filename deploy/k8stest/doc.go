// Package k8stest holds the tests that keep deploy/ honest: the Kubernetes
// manifests under deploy/k8s (the base and the rendered production overlay)
// decode strictly into the Kubernetes API types and agree with the code and
// its configuration, and the Prometheus rules under deploy/prometheus parse
// and name only metrics the fleet exports. It has no code of its own.
package k8stest
