//! The binary's command line: exit codes, config validation messages, the shipped examples,
//! `mint`, `keygen` and `inspect`.
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-proxy");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TOKENREVIEW_PROXY_CONFIG")
        .output()
        .expect("run binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `[server]`'s listen line for a free loopback port.
const LOOPBACK_0: &str = "listen = \"127.0.0.1:0\"";

const VALID: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8081"
[[issuers]]
name = "cluster"
issuer = "https://kubernetes.default.svc.cluster.local"
audiences = ["a"]
"#;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn every_shipped_example_config_passes_check_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let o = run(&["check-config", "--config", path.to_str().unwrap()]);
            assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
            assert!(stdout(&o).contains("(valid)"));
            n += 1;
        }
    }
    assert!(n >= 3, "expected at least 3 example configs, found {n}");
}

#[test]
fn unknown_key_exits_64_naming_file_and_key() {
    let f = write_config(&VALID.replace("[server]", "[server]\nlisten_adress = \"x\""));
    let o = run(&["check-config", "--config", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    let e = stderr(&o);
    assert!(e.contains(f.path().to_str().unwrap()), "{e}");
    assert!(e.contains("listen_adress"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn invalid_values_exit_64_naming_the_key() {
    for (text, key) in [
        (VALID.replace("\"a\"]", "]"), "issuers[0].audiences"),
        (
            VALID.replace(
                "name = \"cluster\"",
                "name = \"cluster\"\nalgorithms = [\"none\"]",
            ),
            "issuers[0].algorithms",
        ),
        (
            VALID.replace("[upstream]", "[upstream]\nidentity_headers = \"both\""),
            "upstream.identity_headers",
        ),
        (
            VALID.replace("[server]", "[cache]\nmax_ttl = \"forever\"\n[server]"),
            "cache.max_ttl",
        ),
        ("this is = = not toml".to_string(), "(syntax)"),
    ] {
        let f = write_config(&text);
        let o = run(&["check-config", "--config", f.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(64), "{key}: {}", stderr(&o));
        assert!(stderr(&o).contains(key), "{key}: {}", stderr(&o));
    }
}

#[test]
fn missing_config_file_and_bad_usage_exit_64() {
    let o = run(&["check-config", "--config", "/nonexistent/x.toml"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("/nonexistent/x.toml"));
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(64));
    let o = run(&["run"]);
    assert_eq!(
        o.status.code(),
        Some(64),
        "run without --config is a usage error"
    );
}

#[test]
fn run_refuses_missing_files_with_64_naming_the_key() {
    let f = write_config(&VALID.replace(
        "audiences = [\"a\"]",
        "audiences = [\"a\"]\nca_file = \"/nonexistent/ca.crt\"",
    ));
    let o = run(&["run", "--config", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("issuers[0].ca_file"), "{}", stderr(&o));
    // check-config refuses it too, naming the key.
    let o = run(&["check-config", "--config", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("issuers[0].ca_file"), "{}", stderr(&o));
}

/// A file under /var/run/secrets/ exists only in the pod: check-config warns, naming the key.
#[test]
fn check_config_only_warns_about_files_that_exist_only_in_the_pod() {
    let f = write_config(&VALID.replace(
        "audiences = [\"a\"]",
        "audiences = [\"a\"]\nca_file = \"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt\"",
    ));
    let o = run(&["check-config", "--config", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("warning"), "{}", stdout(&o));
    assert!(stdout(&o).contains("issuers[0].ca_file"), "{}", stdout(&o));
}

/// Relative paths are relative to the config file, wherever the command runs.
#[test]
fn relative_paths_resolve_against_the_config_files_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/static-jwks.toml");
    let o = Command::new(BIN)
        .args(["check-config", "--config", example.to_str().unwrap()])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Valid settings that contradict each other are named; values print as written.
#[test]
fn check_config_warns_about_contradictions_and_prints_values_as_written() {
    let f = write_config(&VALID.replace(
        "audiences = [\"a\"]",
        "audiences = [\"a\"]\nrefresh_interval = \"10m\"\nmax_stale = \"5m\"\njwks_url = \"http://keys.example/jwks\"",
    ).replace("127.0.0.1:8080", "0.0.0.0:8080"));
    let o = run(&["check-config", "--config", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("issuers[0].max_stale"), "{out}");
    assert!(out.contains("issuers[0].jwks_url"), "{out}");
    assert!(out.contains("tokenreview.enabled"), "{out}");
    assert!(out.contains("identity_headers=remote"), "{out}");
    assert!(out.contains("refresh_interval 10m"), "{out}");
    assert!(
        !out.contains("Remote") && !out.contains("Kubernetes"),
        "{out}"
    );
}

/// `keygen --alg ES256 --kid KID` into `dir`: (private key PEM, JWKS) paths.
fn keygen_es256(dir: &std::path::Path, kid: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("key.pem");
    let jwks = dir.join("jwks.json");
    let o = run(&[
        "keygen",
        "--alg",
        "ES256",
        "--kid",
        kid,
        "--out",
        key.to_str().unwrap(),
        "--jwks-out",
        jwks.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (key, jwks)
}

/// `mint` with key `k9` for issuer `https://iss.example` and audience `svc`, plus `extra`.
fn mint_k9(key: &std::path::Path, extra: &[&str]) -> Output {
    let key = key.to_str().unwrap();
    let mut args = vec![
        "mint",
        "--key",
        key,
        "--kid",
        "k9",
        "--issuer",
        "https://iss.example",
        "--audience",
        "svc",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn keygen_mint_and_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = keygen_es256(dir.path(), "k9");
    let o = mint_k9(
        &key,
        &[
            "--namespace",
            "shop",
            "--service-account",
            "cart",
            "--pod",
            "cart-1",
            "--ttl",
            "10m",
            "--count",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let tokens: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(tokens.len(), 3);
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "each token distinct"
    );

    // Unverified decoding.
    let o = run(&["inspect", &tokens[0]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("UNVERIFIED"));
    assert!(out.contains("https://iss.example"));
    assert!(out.contains("bound pod: cart-1"));
    assert!(out.contains("bound service-account token"));

    // Full verification against a config using the generated JWKS.
    let cfg = file_issuer_config(&jwks, LOOPBACK_0, "", "");
    let o = run(&[
        "inspect",
        &tokens[1],
        "--config",
        cfg.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("VERIFIED"));
    assert!(stdout(&o).contains("system:serviceaccount:shop:cart"));
    assert!(
        stdout(&o).contains("authentication.kubernetes.io/credential-id = [\"JTI="),
        "{}",
        stdout(&o)
    );

    // A tampered signature: inspect says exactly why.
    // Flip a character in the middle of the signature (every middle base64url character
    // carries 6 bits; the last one does not, and changing it can make the encoding
    // non-canonical, which is `malformed`, not `bad_signature`).
    let mut bad: Vec<char> = tokens[2].chars().collect();
    let k = bad.len() - 10;
    bad[k] = if bad[k] == 'A' { 'B' } else { 'A' };
    let bad: String = bad.into_iter().collect();
    let o = run(&["inspect", &bad, "--config", cfg.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("REJECTED: bad_signature"),
        "{}",
        stdout(&o)
    );
    // The token is never echoed in the verdict or logs.
    assert!(!stderr(&o).contains(&bad));

    // --distinct-pods: every token bound to a pod of its own (the cache-memory worst case).
    let o = mint_k9(&key, &["--pod", "web", "--count", "2", "--distinct-pods"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pods: std::collections::HashSet<String> = stdout(&o)
        .lines()
        .map(|t| {
            let out = stdout(&run(&["inspect", t]));
            let line = out.lines().find(|l| l.contains("bound pod: web-"));
            line.unwrap_or_else(|| panic!("no pod in {out}"))
                .to_string()
        })
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
}

#[test]
fn inspect_reads_stdin_and_rejects_garbage() {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["inspect", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not-a-token\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a compact JWS"));
}

/// A config whose one issuer (`file`, `https://iss.example`, audience `svc`, ES256) reads its
/// keys from `jwks`, with nothing listening upstream. `server` and `issuer` add keys to those
/// tables; `sections` adds tables between them.
fn file_issuer_config(
    jwks: &std::path::Path,
    server: &str,
    sections: &str,
    issuer: &str,
) -> tempfile::NamedTempFile {
    write_config(&format!(
        r#"
[server]
{server}
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
{sections}
[[issuers]]
name = "file"
issuer = "https://iss.example"
jwks_file = "{}"
audiences = ["svc"]
algorithms = ["ES256"]
{issuer}
"#,
        jwks.display()
    ))
}

/// A config for `run`: an ES256 key file issuer, nothing listening upstream.
fn run_config(dir: &std::path::Path, listen: &str) -> tempfile::NamedTempFile {
    let (_, jwks) = keygen_es256(dir, "k1");
    file_issuer_config(
        &jwks,
        &format!("listen = \"{listen}\"\nshutdown_grace = \"5s\""),
        "",
        "",
    )
}

/// Spawn `run` on `cfg`, its log (stderr) piped.
fn spawn_run(cfg: &tempfile::NamedTempFile) -> std::process::Child {
    Command::new(BIN)
        .args(["run", "--config", cfg.path().to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Start `run` and read its log until it says it started.
/// A running `run`, killed however the test ends: a survivor would hold the test's output
/// pipe open, and CI would wait on it.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

fn start_run(
    cfg: &tempfile::NamedTempFile,
) -> (Proc, std::io::BufReader<std::process::ChildStderr>, String) {
    use std::io::BufRead;
    let mut child = Proc(spawn_run(cfg));
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut log = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        log.push_str(&line);
        if line.contains("tokenreview-proxy started") {
            break;
        }
        line.clear();
    }
    assert!(log.contains("tokenreview-proxy started"), "{log}");
    (child, stderr, log)
}

/// Wait up to 10 s for `child` to exit.
fn exit_within_10s(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("no exit within 10 s of {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn sigterm(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

#[test]
fn run_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = run_config(dir.path(), "127.0.0.1:0");
    let (mut child, mut stderr, log) = start_run(&cfg);
    sigterm(&child);
    let status = exit_within_10s(&mut child, "SIGTERM");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert_eq!(status.code(), Some(0), "{log}{rest}");
    assert!(rest.contains("shutting down"), "{rest}");
}

/// The listener is one `SO_REUSEPORT` socket per worker, and such sockets let any process of
/// the same user bind the port too. A second proxy started on the port of a running one must
/// fail ("address in use", exit 1), not quietly take a share of its connections.
#[test]
fn a_second_run_on_a_port_in_use_fails_instead_of_sharing_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = run_config(dir.path(), &listen);
    let (mut first, _first_log, _) = start_run(&cfg);

    let mut second = Proc(spawn_run(&cfg));
    let status = exit_within_10s(&mut second, "starting on a port in use");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err);
    sigterm(&first);
    exit_within_10s(&mut first, "SIGTERM");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {listen} (server.listen)")),
        "{err}"
    );
}

/// Read the log until a line contains `needle`; `None` at end of output.
fn log_until(
    stderr: &mut std::io::BufReader<std::process::ChildStderr>,
    needle: &str,
) -> Option<String> {
    use std::io::BufRead;
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line.contains(needle) {
            return Some(line);
        }
    }
}

/// SIGHUP reloads instead of killing the process, and so does a change to the config file;
/// an invalid new file is refused with the running config kept.
#[test]
fn sighup_and_a_changed_file_reload_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = run_config(dir.path(), "127.0.0.1:0");
    let (child, mut stderr, _) = start_run(&cfg);
    let pid = child.id().to_string();
    // A watchdog: a process that never logs what the test waits for is killed, which ends
    // its output and fails the test instead of hanging it.
    let child = std::sync::Arc::new(std::sync::Mutex::new(child));
    let watchdog = {
        let child = child.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(30));
            let _ = child.lock().unwrap().kill();
        })
    };
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    assert!(
        log_until(&mut stderr, "config reloaded").is_some(),
        "SIGHUP reloads"
    );

    let text = std::fs::read_to_string(cfg.path()).unwrap();
    std::fs::write(
        cfg.path(),
        text.replace("[\"svc\"]", "[\"svc\", \"other\"]"),
    )
    .unwrap();
    assert!(
        log_until(&mut stderr, "config reloaded").is_some(),
        "a changed file reloads"
    );

    std::fs::write(cfg.path(), "[server]\nlisten = 7\n").unwrap();
    let refused = log_until(&mut stderr, "config reload refused").expect("refused");
    assert!(refused.contains("server.listen"), "{refused}");
    assert!(
        !refused.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );

    let status = {
        let mut c = child.lock().unwrap();
        assert!(c.try_wait().unwrap().is_none(), "still running");
        sigterm(&c);
        exit_within_10s(&mut c, "SIGTERM")
    };
    assert_eq!(status.code(), Some(0));
    drop(watchdog);
}

/// `inspect --config` lists every check the token fails, each with what was expected, not
/// only the first: here a lifetime over `max_lifetime`, an audience the issuer does not accept
/// and a key id its JWKS lacks.
#[test]
fn inspect_with_a_config_lists_every_failed_check_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, jwks) = keygen_es256(dir.path(), "k9");
    // Another key, in a directory of its own: kid "k8" is unknown to the config's JWKS.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = keygen_es256(other_dir.path(), "k8");
    let o = run(&[
        "mint",
        "--key",
        other.to_str().unwrap(),
        "--kid",
        "k8",
        "--issuer",
        "https://iss.example",
        "--audience",
        "elsewhere",
        "--ttl",
        "10h",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    let cfg = file_issuer_config(
        &jwks,
        LOOPBACK_0,
        "",
        "max_lifetime = \"1h\"\n[[issuers]]\nname = \"never-fetched\"\n\
         issuer = \"https://unreachable.invalid\"\n\
         jwks_url = \"https://unreachable.invalid/jwks\"\naudiences = [\"svc\"]",
    );
    let started = std::time::Instant::now();
    let o = run(&["inspect", &token, "--config", cfg.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("audience (audience_mismatch)"), "{out}");
    assert!(out.contains("expected one of [\"svc\"]"), "{out}");
    assert!(out.contains("key (unknown_key)"), "{out}");
    assert!(out.contains("[\"k9\"]"), "the key ids available: {out}");
    assert!(out.contains("validity (lifetime_exceeded)"), "{out}");
    assert!(out.contains("max_lifetime 1h"), "{out}");
    assert!(
        out.contains("REJECTED: lifetime_exceeded, audience_mismatch, unknown_key"),
        "{out}"
    );
    assert!(!out.contains(&token) && !stderr(&o).contains(&token));
    // Only the named issuer's keys are fetched: no wait on the unreachable one.
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

/// One HTTP/1.1 request over a fresh socket; the response's status code.
fn http_status(addr: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `[log] format = "json"`: every line is a JSON object, without colour codes; the access
/// log has a line per request (caller, reason, no query); an unreachable upstream is a
/// warning naming it; no token appears anywhere.
#[test]
fn json_logs_with_access_lines_and_upstream_warnings() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = keygen_es256(dir.path(), "k9");
    let cfg = file_issuer_config(
        &jwks,
        LOOPBACK_0,
        "[log]\nformat = \"json\"\naccess = true",
        "",
    );
    let o = mint_k9(&key, &[]);
    let token = stdout(&o).trim().to_string();
    let (mut child, mut stderr, log) = start_run(&cfg);
    let started: serde_json::Value =
        serde_json::from_str(log.lines().last().unwrap()).expect("JSON log line");
    let addr = started["listen"].as_str().unwrap().to_string();
    // Keys load in the background: wait for /readyz.
    let admin = started["admin"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http_status(&admin, "/readyz", "-") != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(http_status(&addr, "/orders?secret=1", &token), 502);
    assert_eq!(http_status(&addr, "/x", "not-a-token"), 401);
    sigterm(&child);
    exit_within_10s(&mut child, "SIGTERM");
    let mut lines = Vec::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        lines.push(std::mem::take(&mut line));
    }
    let all = format!("{log}{}", lines.concat());
    assert!(!all.contains('\u{1b}'), "no ANSI codes: {all}");
    assert!(!all.contains(&token), "no token in the log");
    let events: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["target"] == "access").collect();
    assert_eq!(access.len(), 2, "{all}");
    assert_eq!(access[0]["path"], "/orders");
    assert_eq!(access[0]["status"], 502);
    assert_eq!(access[0]["user"], "system:serviceaccount:default:default");
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["user"], "-");
    assert_eq!(access[1]["reason"], "malformed");
    let warned = events
        .iter()
        .find(|e| e["message"] == "upstream request failed")
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(warned["level"], "WARN");
    assert_eq!(warned["upstream"], "127.0.0.1:1");
}

/// SIGTERM: `/readyz` turns 503 at once while the listener keeps serving for
/// `shutdown_delay`; then the process drains and exits 0.
#[test]
fn sigterm_keeps_serving_for_shutdown_delay_with_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    let (_, jwks) = keygen_es256(dir.path(), "k9");
    let cfg = file_issuer_config(
        &jwks,
        &format!("{LOOPBACK_0}\nshutdown_delay = \"3s\""),
        "[log]\nformat = \"json\"",
        "",
    );
    let (mut child, _stderr, log) = start_run(&cfg);
    let started: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let addr = started["listen"].as_str().unwrap().to_string();
    let admin = started["admin"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http_status(&admin, "/readyz", "-") != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stopped = std::time::Instant::now();
    sigterm(&child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        http_status(&admin, "/readyz", "-"),
        503,
        "not ready at once"
    );
    // New connections are still accepted and answered (401: no valid token).
    assert_eq!(http_status(&addr, "/", "not-a-token"), 401);
    let status = exit_within_10s(&mut child, "SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        stopped.elapsed() >= std::time::Duration::from_secs(3),
        "waited shutdown_delay"
    );
}

/// `keygen --alg ES512`, `mint --oidc` with `--claims-json` and `--claim`, and `inspect
/// --config` showing the identity an OIDC issuer's mappings give, or the failed rule's message.
#[test]
fn mint_oidc_claims_and_inspect_show_the_mapped_identity_or_the_failed_rule() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let jwks = dir.path().join("jwks.json");
    let o = run(&[
        "keygen",
        "--alg",
        "ES512",
        "--kid",
        "k9",
        "--out",
        key.to_str().unwrap(),
        "--jwks-out",
        jwks.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&jwks).unwrap().contains("P-521"));
    let claims_file = dir.path().join("claims.json");
    std::fs::write(&claims_file, r#"{"hd": "example.com", "roles": ["dev"]}"#).unwrap();
    let mint = |extra: &[&str]| {
        let mut args = vec![
            "--oidc",
            "--sub",
            "alice",
            "--claims-json",
            claims_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = mint_k9(&key, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    let token = mint(&["--claim", "tenant=t1", "--claim", "level=3"]);
    let o = run(&["inspect", &token]);
    let out = stdout(&o);
    assert!(out.contains("\"alg\": \"ES512\""), "{out}");
    assert!(out.contains("generic JWT (OIDC)"), "{out}");
    assert!(out.contains("\"level\": 3"), "a JSON value: {out}");
    assert!(out.contains("\"tenant\": \"t1\""), "a string: {out}");
    assert!(!out.contains("kubernetes.io"), "{out}");

    let cfg = write_config(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[[issuers]]
name = "sso"
issuer = "https://iss.example"
jwks_file = "{}"
audiences = ["svc"]
algorithms = ["ES512"]
claims = "oidc"
[[issuers.claim_validation_rules]]
expression = "claims.level < 5"
message = "level too high"
[issuers.claim_mappings]
username_expression = "'oidc:' + claims.sub"
groups_expression = "claims.roles"
extra = [{{ key = "example.com/tenant", value_expression = "claims.tenant" }}]
"#,
        jwks.display()
    ));
    let cfg = cfg.path().to_str().unwrap();
    let o = run(&["inspect", &token, "--config", cfg]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains("VERIFIED by issuer \"sso\": oidc:alice"),
        "{out}"
    );
    assert!(out.contains("[\"dev\", \"system:authenticated\"]"), "{out}");
    assert!(out.contains("example.com/tenant = [\"t1\"]"), "{out}");

    let refused = mint(&["--claim", "tenant=t1", "--claim", "level=9"]);
    let o = run(&["inspect", &refused, "--config", cfg]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("REJECTED: invalid_claims — level too high"),
        "{out}"
    );

    let o = mint_k9(&key, &["--claim", "novalue"]);
    assert_eq!(o.status.code(), Some(64));
}

/// A changed `authentication_config` file reloads the config like a changed config file; an
/// invalid one is refused, naming the YAML file, and the running config stays.
#[test]
fn a_changed_authentication_config_file_reloads_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("authn.yaml");
    let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";
    // A loopback issuer nothing listens on: no key fetch leaves the machine.
    let jwt = "jwt:\n- issuer:\n    url: https://127.0.0.1:1/sso\n    audiences: [a]\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n";
    std::fs::write(&yaml, format!("{head}{jwt}")).unwrap();
    let base = run_config(dir.path(), "127.0.0.1:0");
    let text = std::fs::read_to_string(base.path()).unwrap();
    let cfg = write_config(&format!(
        "authentication_config = \"{}\"\n{text}",
        yaml.display()
    ));
    let (child, mut stderr, _) = start_run(&cfg);
    let child = std::sync::Arc::new(std::sync::Mutex::new(child));
    let watchdog = {
        let child = child.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(30));
            let _ = child.lock().unwrap().kill();
        })
    };
    // A SIGHUP first: once it is answered, the file watch is running and has read the files.
    let pid = child.lock().unwrap().id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    assert!(
        log_until(&mut stderr, "config reloaded").is_some(),
        "SIGHUP reloads"
    );
    std::fs::write(
        &yaml,
        format!(
            "{head}{}",
            jwt.replace("[a]", "[a, b]\n    audienceMatchPolicy: MatchAny")
        ),
    )
    .unwrap();
    assert!(
        log_until(&mut stderr, "config reloaded").is_some(),
        "a changed authentication_config reloads"
    );
    std::fs::write(
        &yaml,
        format!(
            "{head}{}",
            jwt.replace("claim: sub", "expression: 'claims.sub +'")
        ),
    )
    .unwrap();
    let refused = log_until(&mut stderr, "config reload refused").expect("refused");
    assert!(refused.contains("authn.yaml"), "{refused}");
    assert!(
        refused.contains("jwt[0].claimMappings.username"),
        "{refused}"
    );
    let status = {
        let mut c = child.lock().unwrap();
        assert!(c.try_wait().unwrap().is_none(), "still running");
        sigterm(&c);
        exit_within_10s(&mut c, "SIGTERM")
    };
    assert_eq!(status.code(), Some(0));
    drop(watchdog);
}
