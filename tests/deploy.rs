//! The Kubernetes manifests in `deploy/` (SPEC section 16): each overlay is rendered with
//! `kubectl kustomize` and held to what it promises: the config it embeds passes `check-config`
//! and matches the ports, probes and mounts of its Deployment; the pod drains within its grace
//! period; the sidecar's application is reachable only through the proxy; the webhook's
//! kubeconfig names the Service and port the Deployment serves.
//!
//! Needs `kubectl` and `python3` with PyYAML (to read the rendered YAML as JSON; CI installs
//! it with the Kubernetes Python client). Without them these tests are skipped with a banner,
//! or fail when `CI` is set.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-proxy");
const OVERLAYS: [&str; 3] = ["gateway", "sidecar", "webhook"];
const CONFIG_DIR: &str = "/etc/tokenreview-proxy";
const PROXY: &str = "tokenreview-proxy";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn overlay_dir(name: &str) -> PathBuf {
    repo().join("deploy/overlays").join(name)
}

/// Why the tools are not usable, if they are not.
fn tools_missing() -> Option<String> {
    match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "`kubectl version --client` failed: {}",
                text(&o.stderr)
            ))
        }
        Err(e) => return Some(format!("kubectl cannot be run ({e}); install kubectl")),
    }
    match Command::new("python3").args(["-c", "import yaml"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(_) => Some("python3 has no PyYAML (`pip install pyyaml`)".into()),
        Err(e) => Some(format!("python3 cannot be run ({e})")),
    }
}

/// True when the test may go on; a loud skip outside CI, a failure in CI.
fn tools_present(test: &str) -> bool {
    let Some(why) = tools_missing() else {
        return true;
    };
    let msg = format!("tests/deploy.rs needs kubectl and python3 with PyYAML: {why}");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    // Straight to fd 2: libtest captures `eprintln!`, and a skip must not be silent.
    let banner = format!(
        "\n!!!!!!!! SKIPPED {test} !!!!!!!!\n!!! {msg}\n!!! (with CI set, this is a failure)\n\n"
    );
    let _ = std::io::stderr().write_all(banner.as_bytes());
    false
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every YAML document of `yaml`, as JSON values.
fn yaml_documents(yaml: &[u8]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(yaml).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "YAML to JSON failed: {}",
        text(&o.stderr)
    );
    match serde_json::from_slice(&o.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

/// The overlay as `kubectl kustomize` renders it.
struct Rendered {
    name: &'static str,
    objects: Vec<Value>,
}

fn render(name: &'static str) -> Rendered {
    let o = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay_dir(name))
        .output()
        .expect("kubectl runs");
    assert!(
        o.status.success(),
        "kubectl kustomize deploy/overlays/{name}: {}",
        text(&o.stderr)
    );
    Rendered {
        name,
        objects: yaml_documents(&o.stdout),
    }
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(
            all.len(),
            1,
            "{}: expected one {kind}, found {}",
            self.name,
            all.len()
        );
        all[0]
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]
    }

    /// The proxy's container, whether a regular one or a native sidecar.
    fn proxy(&self) -> &Value {
        let spec = &self.pod()["spec"];
        all_containers(spec)
            .into_iter()
            .find(|c| c["name"] == PROXY)
            .unwrap_or_else(|| panic!("{}: no container named {PROXY}", self.name))
    }

    /// The config the proxy runs with: the ConfigMap behind the volume mounted at CONFIG_DIR.
    fn config_text(&self) -> String {
        let mount = array(&self.proxy()["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"] == CONFIG_DIR)
            .unwrap_or_else(|| panic!("{}: nothing mounted at {CONFIG_DIR}", self.name));
        let volume = self.volume(str_of(&mount["name"]));
        let cm_name = str_of(&volume["configMap"]["name"]);
        let cm = self
            .all("ConfigMap")
            .into_iter()
            .find(|c| c["metadata"]["name"] == cm_name)
            .unwrap_or_else(|| panic!("{}: ConfigMap {cm_name} is not in the overlay", self.name));
        str_of(&cm["data"]["config.toml"]).to_string()
    }

    /// The embedded config, as JSON for uniform access.
    fn config(&self) -> Value {
        let table: toml::Table = self
            .config_text()
            .parse()
            .expect("the embedded config is TOML");
        serde_json::to_value(table).unwrap()
    }

    fn volume(&self, name: &str) -> &Value {
        array(&self.pod()["spec"]["volumes"])
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.name))
    }

    /// The proxy's containerPort for a port given by name or number.
    fn proxy_port(&self, port: &Value) -> u64 {
        if let Some(n) = port.as_u64() {
            return n;
        }
        let name = str_of(port);
        array(&self.proxy()["ports"])
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{}: the proxy has no port named {name}", self.name))
    }

    fn pod_labels(&self) -> &serde_json::Map<String, Value> {
        self.pod()["metadata"]["labels"]
            .as_object()
            .expect("pod labels")
    }

    /// `selector` (a map of labels) selects this overlay's pods.
    fn selects_pod(&self, selector: &Value) -> bool {
        let labels = self.pod_labels();
        let sel = selector.as_object().expect("a label map");
        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

fn all_containers(pod_spec: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> = array(&pod_spec["containers"]).iter().collect();
    v.extend(array(&pod_spec["initContainers"]).iter());
    v
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().expect("a port")
}

fn duration(config: &Value, key: &str, default: &str) -> Duration {
    let v = config["server"]
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or(default);
    humantime::parse_duration(v).expect("a duration")
}

fn check_config(path: &Path) -> Output {
    Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .env_remove("TOKENREVIEW_PROXY_CONFIG")
        .output()
        .expect("run binary")
}

fn pre_stop_seconds(container: &Value) -> u64 {
    container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn every_overlay_embeds_a_config_that_passes_check_config() {
    if !tools_present("every_overlay_embeds_a_config_that_passes_check_config") {
        return;
    }
    for name in OVERLAYS {
        let r = render(name);
        let embedded = r.config_text();
        let on_disk = std::fs::read_to_string(overlay_dir(name).join("config.toml")).unwrap();
        assert_eq!(
            embedded, on_disk,
            "{name}: the ConfigMap holds the overlay's config.toml"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &embedded).unwrap();
        let o = check_config(&path);
        assert!(
            o.status.success(),
            "{name}: check-config: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stdout).contains("(valid)"),
            "{name}: {}",
            text(&o.stdout)
        );
        // Only the pod's own files may be missing here: those under /var/run/secrets/.
        let out = text(&o.stdout) + &text(&o.stderr);
        for line in out.lines().filter(|l| l.starts_with("warning")) {
            assert!(
                line.contains("/var/run/secrets/"),
                "{name}: unexpected warning: {line}"
            );
        }
    }
}

#[test]
fn every_overlay_runs_the_proxy_pod_security_restricted_with_probes_on_the_admin_port() {
    if !tools_present(
        "every_overlay_runs_the_proxy_pod_security_restricted_with_probes_on_the_admin_port",
    ) {
        return;
    }
    for name in OVERLAYS {
        let r = render(name);
        let ns = r.one("Namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{name}"
        );
        let spec = &r.pod()["spec"];
        let psc = &spec["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}");
        assert_eq!(psc["runAsUser"], 65532, "{name}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for c in all_containers(spec) {
            let who = format!("{name}: container {}", c["name"]);
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{who}"
            );
            assert!(
                c["resources"]["requests"]["cpu"].is_string(),
                "{who}: no CPU request"
            );
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{who}: no memory limit"
            );
        }

        let proxy = r.proxy();
        assert_eq!(
            proxy["args"],
            serde_json::json!(["run", "--config", format!("{CONFIG_DIR}/config.toml")]),
            "{name}"
        );
        let config = r.config();
        let admin = str_of(&config["admin"]["listen"]);
        assert_eq!(
            admin, "0.0.0.0:9090",
            "{name}: the kubelet probes the pod IP"
        );
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &proxy[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name}: {probe}");
            assert_eq!(
                r.proxy_port(&get["port"]),
                port_of(admin),
                "{name}: {probe} port"
            );
        }
        // The Service reaches the port the proxy listens on.
        let listen = port_of(str_of(&config["server"]["listen"]));
        let svc = r.one("Service");
        assert!(
            r.selects_pod(&svc["spec"]["selector"]),
            "{name}: Service selector"
        );
        for p in array(&svc["spec"]["ports"]) {
            assert_eq!(
                r.proxy_port(&p["targetPort"]),
                listen,
                "{name}: Service targets server.listen"
            );
        }
    }
}

#[test]
fn termination_grace_outlasts_the_prestop_sleeps_the_shutdown_delay_and_the_drain() {
    if !tools_present(
        "termination_grace_outlasts_the_prestop_sleeps_the_shutdown_delay_and_the_drain",
    ) {
        return;
    }
    for name in OVERLAYS {
        let r = render(name);
        let config = r.config();
        let spec = &r.pod()["spec"];
        let grace = spec["terminationGracePeriodSeconds"].as_u64().expect("set");
        // The application containers stop first (their preStop sleeps included); a sidecar
        // proxy gets SIGTERM only after they exited, a regular one alongside them.
        let proxy = r.proxy();
        let apps = array(&spec["containers"])
            .iter()
            .filter(|c| c["name"] != PROXY);
        let before_proxy = if proxy["restartPolicy"] == "Always" {
            apps.map(pre_stop_seconds).max().unwrap_or(0)
        } else {
            0
        };
        // shutdown_delay: SPEC 15's default of 5s when the config does not set it.
        let needed = Duration::from_secs(before_proxy + pre_stop_seconds(proxy))
            + duration(&config, "shutdown_delay", "5s")
            + duration(&config, "shutdown_grace", "25s");
        assert!(
            Duration::from_secs(grace) > needed,
            "{name}: terminationGracePeriodSeconds {grace} must exceed {needed:?}"
        );
    }
}

#[test]
fn sidecar_application_is_reachable_only_through_the_proxy() {
    if !tools_present("sidecar_application_is_reachable_only_through_the_proxy") {
        return;
    }
    let r = render("sidecar");
    let spec = &r.pod()["spec"];
    let proxy = r.proxy();
    assert!(
        array(&spec["initContainers"])
            .iter()
            .any(|c| c["name"] == PROXY),
        "the proxy is an init container"
    );
    assert_eq!(proxy["restartPolicy"], "Always", "a native sidecar");

    let config = r.config();
    let upstream = str_of(&config["upstream"]["url"]);
    assert_eq!(upstream, "http://127.0.0.1:8081");
    let apps: Vec<&Value> = array(&spec["containers"]).iter().collect();
    assert_eq!(apps.len(), 1, "one application container");
    let app = apps[0];
    assert!(
        app["ports"].is_null(),
        "the application declares no port: {}",
        app["ports"]
    );
    let cmd: Vec<&str> = array(&app["command"])
        .iter()
        .chain(array(&app["args"]))
        .map(str_of)
        .collect();
    assert!(
        cmd.contains(&"127.0.0.1:8081"),
        "the application listens on loopback: {cmd:?}"
    );
    assert!(
        !cmd.iter()
            .any(|a| a.contains("0.0.0.0") || a.starts_with(':')),
        "no wildcard address in {cmd:?}"
    );

    let listen = port_of(str_of(&config["server"]["listen"]));
    let svc = r.one("Service");
    let ports = array(&svc["spec"]["ports"]);
    assert_eq!(ports.len(), 1, "the Service exposes one port");
    assert_eq!(r.proxy_port(&ports[0]["targetPort"]), listen);

    let np = r.one("NetworkPolicy");
    assert!(
        r.selects_pod(&np["spec"]["podSelector"]["matchLabels"]),
        "NetworkPolicy selects the pod"
    );
    assert_eq!(np["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    let rules = array(&np["spec"]["ingress"]);
    assert!(!rules.is_empty());
    for rule in rules {
        let ports = array(&rule["ports"]);
        assert!(
            !ports.is_empty(),
            "a rule without ports would open every port: {rule}"
        );
        for p in ports {
            assert_eq!(
                r.proxy_port(&p["port"]),
                listen,
                "ingress only to the proxy port: {rule}"
            );
        }
    }
}

#[test]
fn webhook_kubeconfig_names_the_service_and_port_the_deployment_serves() {
    if !tools_present("webhook_kubeconfig_names_the_service_and_port_the_deployment_serves") {
        return;
    }
    let r = render("webhook");
    let raw = std::fs::read(overlay_dir("webhook").join("kube-apiserver-webhook.kubeconfig.yaml"))
        .unwrap();
    let kubeconfig = yaml_documents(&raw).remove(0);
    let clusters = array(&kubeconfig["clusters"]);
    assert_eq!(clusters.len(), 1);
    let cluster = &clusters[0]["cluster"];
    let server = str_of(&cluster["server"]);
    assert!(
        cluster["certificate-authority"].is_string(),
        "the kubeconfig trusts a CA"
    );
    let users = array(&kubeconfig["users"]);
    assert!(
        users[0]["user"]["client-certificate"].is_string(),
        "the API server presents a client cert"
    );
    assert!(users[0]["user"]["client-key"].is_string());

    let rest = server.strip_prefix("https://").expect("https");
    let (authority, path) = rest.split_once('/').unwrap();
    assert_eq!(path, "apis/authentication.k8s.io/v1/tokenreviews");
    let (host, port) = authority.split_once(':').expect("an explicit port");
    let port: u64 = port.parse().unwrap();
    let svc = r.one("Service");
    let want_host = format!(
        "{}.{}.svc",
        str_of(&svc["metadata"]["name"]),
        str_of(&svc["metadata"]["namespace"])
    );
    assert_eq!(host, want_host, "the kubeconfig names the Service");
    let svc_port = array(&svc["spec"]["ports"])
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("the Service has no port {port}: {}", svc["spec"]["ports"]));
    let config = r.config();
    let listen = port_of(str_of(&config["server"]["listen"]));
    assert_eq!(
        r.proxy_port(&svc_port["targetPort"]),
        listen,
        "the Service port leads to server.listen"
    );

    // TLS from the mounted Secret, client certificates required, no bearer required.
    let server_cfg = &config["server"];
    let tls_mount = array(&r.proxy()["volumeMounts"])
        .iter()
        .find(|m| r.volume(str_of(&m["name"]))["secret"].is_object())
        .expect("a Secret is mounted");
    let dir = str_of(&tls_mount["mountPath"]);
    for (key, file) in [
        ("tls_cert_file", "tls.crt"),
        ("tls_key_file", "tls.key"),
        ("client_ca_file", "ca.crt"),
    ] {
        let path = server_cfg
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("server.{key} unset"));
        assert_eq!(
            path,
            format!("{dir}/{file}"),
            "server.{key} is in the mounted Secret"
        );
    }
    assert_eq!(config["tokenreview"]["enabled"].as_bool(), Some(true));
    assert!(
        config["tokenreview"].get("allowed_callers").is_none(),
        "the client certificate decides"
    );
    assert!(config.get("upstream").is_none(), "TokenReview only");
}

#[test]
fn gateway_spreads_replicas_and_carries_its_budget_autoscaler_policy_and_rbac() {
    if !tools_present("gateway_spreads_replicas_and_carries_its_budget_autoscaler_policy_and_rbac")
    {
        return;
    }
    let r = render("gateway");
    let d = r.deployment();
    assert_eq!(d["spec"]["replicas"], 2);
    let spreads = array(&r.pod()["spec"]["topologySpreadConstraints"]);
    assert!(
        spreads
            .iter()
            .any(|s| s["topologyKey"] == "kubernetes.io/hostname"
                && s["whenUnsatisfiable"] == "DoNotSchedule"
                && r.selects_pod(&s["labelSelector"]["matchLabels"])),
        "replicas spread across nodes: {spreads:?}"
    );
    let pdb = r.one("PodDisruptionBudget");
    assert!(
        r.selects_pod(&pdb["spec"]["selector"]["matchLabels"]),
        "PDB selects the pods"
    );
    let hpa = r.one("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], d["metadata"]["name"]);
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let np = r.one("NetworkPolicy");
    assert!(r.selects_pod(&np["spec"]["podSelector"]["matchLabels"]));

    // RBAC: bound to the ServiceAccount the pods run as, in their namespace.
    let sa = str_of(&r.pod()["spec"]["serviceAccountName"]);
    let ns = str_of(&d["metadata"]["namespace"]);
    let bound_roles: Vec<&str> = r
        .all("ClusterRoleBinding")
        .into_iter()
        .filter(|b| {
            array(&b["subjects"])
                .iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns)
        })
        .map(|b| str_of(&b["roleRef"]["name"]))
        .collect();
    assert!(
        bound_roles.contains(&"system:service-account-issuer-discovery"),
        "{bound_roles:?}"
    );
    let grants = |group: &str, resource: &str, verb: &str| {
        r.all("ClusterRole")
            .into_iter()
            .filter(|c| bound_roles.contains(&str_of(&c["metadata"]["name"])))
            .any(|c| {
                array(&c["rules"]).iter().any(|rule| {
                    array(&rule["apiGroups"]).iter().any(|g| g == group)
                        && array(&rule["resources"]).iter().any(|x| x == resource)
                        && array(&rule["verbs"]).iter().any(|v| v == verb)
                })
            })
    };
    for resource in ["serviceaccounts", "pods", "secrets", "nodes"] {
        for verb in ["list", "watch"] {
            assert!(grants("", resource, verb), "{verb} {resource}");
        }
    }
    assert!(grants(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "create"
    ));
}
