package deploytest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/configmaps.yaml from deploy/*.Caddyfile and prometheus.yml")

// manifests is everything under deploy/kubernetes/, decoded strictly into
// the Kubernetes API types (an unknown or misspelt field fails).
type manifests struct {
	namespaces  []corev1.Namespace
	configMaps  map[string]corev1.ConfigMap
	secrets     map[string]corev1.Secret
	services    map[string]corev1.Service
	deployments map[string]appsv1.Deployment
}

func loadManifests(t *testing.T, dir string) manifests {
	t.Helper()
	m := manifests{configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{},
		services: map[string]corev1.Service{}, deployments: map[string]appsv1.Deployment{}}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	example, _ := filepath.Glob(filepath.Join(dir, "*.yaml.example"))
	files = append(files, example...)
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", dir)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", filepath.Base(file), i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			strict := func(into any) {
				t.Helper()
				if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
					t.Fatalf("%s (%s): %v", where, tm.Kind, err)
				}
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				m.namespaces = append(m.namespaces, decode[corev1.Namespace](strict))
			case "v1 ConfigMap":
				o := decode[corev1.ConfigMap](strict)
				m.configMaps[o.Name] = o
			case "v1 Secret":
				o := decode[corev1.Secret](strict)
				m.secrets[o.Name] = o
			case "v1 Service":
				o := decode[corev1.Service](strict)
				m.services[o.Name] = o
			case "apps/v1 Deployment":
				o := decode[appsv1.Deployment](strict)
				m.deployments[o.Name] = o
			default:
				t.Fatalf("%s: unexpected %q %q", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	return m
}

// decode decodes a document into a new T with strict.
func decode[T any](strict func(any)) T {
	var o T
	strict(&o)
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// configMapsYAML is deploy/kubernetes/configmaps.yaml: the Caddyfiles and
// prometheus.yml of the repository, verbatim.
func configMapsYAML(t *testing.T, root string) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# Generated from deploy/lb.Caddyfile, deploy/edge.Caddyfile and prometheus.yml\n" +
		"# by `go test ./deploy/deploytest -run TestKubernetesManifests -update`;\n" +
		"# the test fails when they differ. Edit those files, not this one.\n")
	cm := func(name string, files ...string) {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: edgetier\ndata:\n", name)
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "  %s: |\n", filepath.Base(f))
			for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
				if line == "" {
					b.WriteString("\n")
				} else {
					b.WriteString("    " + line + "\n")
				}
			}
		}
	}
	cm("edgetier-caddyfiles", "deploy/lb.Caddyfile", "deploy/edge.Caddyfile")
	cm("edgetier-prometheus", "prometheus.yml")
	return b.Bytes()
}

// TestKubernetesManifests decodes every manifest under deploy/kubernetes/
// with strict field checking and checks that they line up with each other
// and with the Caddyfiles: selectors, ports, DNS names, secret keys,
// environment, probes, volumes. No cluster runs here; the README gives the
// recipe for one.
func TestKubernetesManifests(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, "deploy", "kubernetes")
	generated := filepath.Join(dir, "configmaps.yaml")
	if *update {
		if err := os.WriteFile(generated, configMapsYAML(t, root), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(generated); !bytes.Equal(got, configMapsYAML(t, root)) {
		t.Errorf("deploy/kubernetes/configmaps.yaml differs from deploy/*.Caddyfile and prometheus.yml: run go test ./deploy/deploytest -run TestKubernetesManifests -update")
	}
	m := loadManifests(t, dir)

	// The namespace, and everything in it.
	if len(m.namespaces) != 1 || m.namespaces[0].Name != "edgetier" {
		t.Fatalf("want one Namespace edgetier, got %v", m.namespaces)
	}
	for _, meta := range m.objects() {
		if meta.Namespace != "edgetier" {
			t.Errorf("%s is in namespace %q, want edgetier", meta.Name, meta.Namespace)
		}
	}
	// The Caddyfiles and prometheus.yml the pods read are the repository's.
	caddyfiles := m.configMaps["edgetier-caddyfiles"]
	for _, name := range []string{"lb.Caddyfile", "edge.Caddyfile"} {
		want, _ := os.ReadFile(filepath.Join(root, "deploy", name))
		if caddyfiles.Data[name] != string(want) {
			t.Errorf("ConfigMap edgetier-caddyfiles: %s is not deploy/%s", name, name)
		}
	}
	promYAML, _ := os.ReadFile(filepath.Join(root, "prometheus.yml"))
	if m.configMaps["edgetier-prometheus"].Data["prometheus.yml"] != string(promYAML) {
		t.Errorf("ConfigMap edgetier-prometheus: prometheus.yml is not the repository's")
	}

	edge, lb := m.deployment(t, "edge"), m.deployment(t, "lb")
	m.deployment(t, "prometheus")
	for name, d := range m.deployments {
		m.checkPods(t, name, d)
	}
	// Each Service selects the pods of one Deployment, on ports they have.
	for name, s := range m.services {
		var chosen []string
		for dn, d := range m.deployments {
			if len(s.Spec.Selector) > 0 && selects(s.Spec.Selector, d.Spec.Template.Labels) {
				chosen = append(chosen, dn)
				for _, p := range s.Spec.Ports {
					if _, ok := containerPort(d, p.TargetPort.String()); !ok {
						t.Errorf("Service %s: port %s targets %q, which deployment %s does not have", name, p.Name, p.TargetPort.String(), dn)
					}
				}
			}
		}
		if len(chosen) != 1 {
			t.Errorf("Service %s selects deployments %v, want exactly one", name, chosen)
		}
	}

	lbFile, edgeFile := caddyfiles.Data["lb.Caddyfile"], caddyfiles.Data["edge.Caddyfile"]
	// The edges: their Caddyfile's sites are the ports the pods and the
	// headless Service have.
	for _, port := range []int32{8080, 9180} {
		if !strings.Contains(edgeFile, fmt.Sprintf("\n:%d {", port)) {
			t.Errorf("edge.Caddyfile has no site on :%d", port)
		}
		if _, ok := containerPort(edge, strconv.Itoa(int(port))); !ok {
			t.Errorf("the edge pods do not expose %d", port)
		}
	}
	// The LB finds the edges by the headless Service's name (EDGE_HOST) on
	// the port of its http port.
	host := envValue(t, lb, "EDGE_HOST")
	svc, ok := m.services[host]
	switch {
	case !ok:
		t.Errorf("EDGE_HOST=%q names no Service", host)
	case svc.Spec.ClusterIP != corev1.ClusterIPNone:
		t.Errorf("Service %s is not headless (clusterIP %q): its name would resolve to one virtual IP, not to every edge", host, svc.Spec.ClusterIP)
	case !selects(svc.Spec.Selector, edge.Spec.Template.Labels):
		t.Errorf("Service %s does not select the edge pods", host)
	}
	dyn := regexp.MustCompile(`dynamic a \{\$EDGE_HOST:[a-z.]+\} (\d+) \{`).FindStringSubmatch(lbFile)
	if dyn == nil {
		t.Fatalf("lb.Caddyfile: no `dynamic a {$EDGE_HOST:…} PORT` upstreams")
	}
	if !serviceHasPort(svc, dyn[1]) {
		t.Errorf("the LB asks the edges on port %s, which Service %s lacks", dyn[1], host)
	}
	// The LB's site and metrics ports.
	if site := envValue(t, lb, "LB_SITE"); !strings.HasPrefix(site, ":") {
		t.Errorf("LB_SITE=%q: the pod's site should be a port (%s)", site, "behind Service cdn")
	} else if _, ok := containerPort(lb, strings.TrimPrefix(site, ":")); !ok {
		t.Errorf("LB_SITE=%s is not a container port of the LB", site)
	}
	// Prometheus's targets: lb:9180 is Service lb's port; the edges' DNS
	// name is the headless Service on a port it has.
	prom := string(promYAML)
	if target := regexp.MustCompile(`targets: \["([a-z]+):(\d+)"\]`).FindStringSubmatch(prom); target == nil {
		t.Errorf("prometheus.yml: no static target for the LB")
	} else if s, ok := m.services[target[1]]; !ok || !selects(s.Spec.Selector, lb.Spec.Template.Labels) || !serviceHasPort(s, target[2]) {
		t.Errorf("prometheus.yml scrapes %s:%s, which is no port of a Service of the LB", target[1], target[2])
	}
	if names := regexp.MustCompile(`names: \["([a-z.]+)"\]\s+type: A\s+port: (\d+)`).FindStringSubmatch(prom); names == nil {
		t.Errorf("prometheus.yml: no DNS discovery of the edges")
	} else if names[1] != host || !serviceHasPort(svc, names[2]) {
		t.Errorf("prometheus.yml finds edges as %s:%s; the edges' headless Service is %s", names[1], names[2], host)
	}

	// Secrets: every key the pods read is in the Secret, and the README
	// creates the same keys.
	secret, ok := m.secrets["edgetier"]
	if !ok {
		t.Fatalf("no Secret edgetier (secret.yaml.example)")
	}
	var used []string
	for name, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if ref.Name != secret.Name {
					t.Errorf("%s: %s reads Secret %q, not %q", name, e.Name, ref.Name, secret.Name)
				} else if _, ok := secret.StringData[ref.Key]; !ok {
					t.Errorf("%s: %s reads key %q, which Secret %s lacks", name, e.Name, ref.Key, secret.Name)
				}
				used = append(used, ref.Key)
			}
		}
	}
	var keys []string
	for k := range secret.StringData {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	used = slices.Compact(slices.Sorted(slices.Values(used)))
	if !slices.Equal(keys, used) {
		t.Errorf("Secret keys %v, keys the pods read %v", keys, used)
	}
	readme, _ := os.ReadFile(filepath.Join(root, "README.md"))
	create := regexp.MustCompile(`kubectl -n edgetier create secret generic edgetier((?:[^\n]*\\\n)*[^\n]*)`).FindSubmatch(readme)
	if create == nil {
		t.Errorf("README: no `kubectl -n edgetier create secret generic edgetier` command")
	} else {
		var readmeKeys []string
		for _, k := range regexp.MustCompile(`--from-literal=([a-z-]+)=`).FindAllSubmatch(create[1], -1) {
			readmeKeys = append(readmeKeys, string(k[1]))
		}
		sort.Strings(readmeKeys)
		if !slices.Equal(readmeKeys, keys) {
			t.Errorf("the README creates the Secret with keys %v, the manifests read %v", readmeKeys, keys)
		}
	}

	// Every variable a Caddyfile needs without a default is set.
	for file, d := range map[string]appsv1.Deployment{"lb.Caddyfile": lb, "edge.Caddyfile": edge} {
		for _, v := range requiredEnv(caddyfiles.Data[file]) {
			if !hasEnv(d, v) {
				t.Errorf("%s needs %s, which deployment %s does not set", file, v, d.Name)
			}
		}
	}

	// Readiness: the edge's is its agent's report on the private port
	// (edge.Caddyfile's /ready); the LB's, on its own, is asked often
	// enough to keep the pool known (more often than forget_after).
	probe := func(d appsv1.Deployment) *corev1.HTTPGetAction {
		p := d.Spec.Template.Spec.Containers[0].ReadinessProbe
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("deployment %s: no HTTP readiness probe", d.Name)
		}
		if port, ok := containerPort(d, p.HTTPGet.Port.String()); !ok || port != 9180 {
			t.Errorf("deployment %s: readiness probe on port %s, want the private port 9180", d.Name, p.HTTPGet.Port.String())
		}
		return p.HTTPGet
	}
	readySite := regexp.MustCompile(`(?s)\n:9180 \{.*handle /ready \{\s*rewrite \* /_edgetier/load`)
	for _, d := range []appsv1.Deployment{edge, lb} {
		file := map[string]string{"edge": edgeFile, "lb": lbFile}[d.Name]
		if p := probe(d); p.Path != "/ready" || !readySite.MatchString(file) {
			t.Errorf("deployment %s: readiness %s, and its Caddyfile answers /ready on :9180 with the agent's report: %v", d.Name, p.Path, readySite.MatchString(file))
		}
	}
	forget := regexp.MustCompile(`forget_after (\d+)s`).FindStringSubmatch(lbFile)
	if forget == nil {
		t.Errorf("lb.Caddyfile sets no forget_after in seconds")
	} else if after, _ := strconv.Atoi(forget[1]); 2*int(lb.Spec.Template.Spec.Containers[0].ReadinessProbe.PeriodSeconds) > after {
		t.Errorf("the LB's readiness probe every %ds does not keep the pool known (forget_after %ss): probe at least twice per forget_after",
			lb.Spec.Template.Spec.Containers[0].ReadinessProbe.PeriodSeconds, forget[1])
	}
}

// objects lists the metadata of every namespaced object.
func (m manifests) objects() []metav1.ObjectMeta {
	var out []metav1.ObjectMeta
	for _, o := range m.configMaps {
		out = append(out, o.ObjectMeta)
	}
	for _, o := range m.secrets {
		out = append(out, o.ObjectMeta)
	}
	for _, o := range m.services {
		out = append(out, o.ObjectMeta)
	}
	for _, o := range m.deployments {
		out = append(out, o.ObjectMeta)
	}
	return out
}

func (m manifests) deployment(t *testing.T, name string) appsv1.Deployment {
	t.Helper()
	d, ok := m.deployments[name]
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	return d
}

// checkPods checks one Deployment: its selector selects its pods, their
// volumes exist (ConfigMaps too), the Caddyfile a container runs is in its
// mounted ConfigMap, the image is used as built here (no pull).
func (m manifests) checkPods(t *testing.T, name string, d appsv1.Deployment) {
	t.Helper()
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("deployment %s: its selector does not select its pods", name)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
		if v.ConfigMap != nil {
			if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("deployment %s: volume %s: no ConfigMap %s", name, v.Name, v.ConfigMap.Name)
			}
		}
	}
	containers := append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...)
	for _, c := range containers {
		mounts := map[string]string{}
		for _, vm := range c.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok {
				t.Errorf("deployment %s: container %s mounts undefined volume %s", name, c.Name, vm.Name)
			}
			mounts[vm.MountPath] = vm.Name
		}
		if strings.HasPrefix(c.Image, "edgetier-caddy") && c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("deployment %s: container %s pulls %s (%q): the image is built and loaded, not pulled", name, c.Name, c.Image, c.ImagePullPolicy)
		}
		if i := slices.Index(c.Command, "--config"); i >= 0 && i+1 < len(c.Command) {
			path := c.Command[i+1]
			v := volumes[mounts[filepath.Dir(path)]]
			if v.ConfigMap == nil {
				t.Errorf("deployment %s: %s is not from a ConfigMap", name, path)
			} else if _, ok := m.configMaps[v.ConfigMap.Name].Data[filepath.Base(path)]; !ok {
				t.Errorf("deployment %s: ConfigMap %s has no %s", name, v.ConfigMap.Name, filepath.Base(path))
			}
		}
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// containerPort finds a container port of d by name or number.
func containerPort(d appsv1.Deployment, port string) (int32, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func serviceHasPort(s corev1.Service, port string) bool {
	return slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port })
}

func envValue(t *testing.T, d appsv1.Deployment, name string) string {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	t.Errorf("deployment %s does not set %s", d.Name, name)
	return ""
}

func hasEnv(d appsv1.Deployment, name string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name }) {
			return true
		}
	}
	return false
}

// requiredEnv lists the environment variables a Caddyfile reads with no
// default: {$NAME} and {env.NAME}.
func requiredEnv(caddyfile string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\{\$([A-Z_]+)\}|\{env\.([A-Z_]+)\}`).FindAllStringSubmatch(caddyfile, -1) {
		out = append(out, m[1]+m[2])
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}
