//! `authentication_config`: a kube-apiserver AuthenticationConfiguration file read as it is.
//! Two HTTPS issuers, each trusted only through its own inline `certificateAuthority`, each
//! with its own rules; tokens go through the real proxy over real sockets. Errors name the
//! YAML file and kube-apiserver's field path; fields that do not apply are warnings.

mod common;

use std::path::Path;

use common::pki::test_pki;
use common::*;
use http::StatusCode;
use serde_json::{json, Value};
use tokenreview_proxy::config::Config;
use tokenreview_proxy::dev::{self, EchoUpstream, MockIssuer, TestKey};

/// `text` indented by `n` spaces (a PEM block inside a YAML literal).
fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

fn proxy_toml(authn: &Path, upstream: &str) -> String {
    format!(
        r#"
authentication_config = "{}"
[server]
listen = "127.0.0.1:0"
workers = 2
shutdown_grace = "2s"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
"#,
        authn.display()
    )
}

fn oidc_token(key: &TestKey, iss: &str, aud: &str, claims: Value) -> String {
    let now = dev::now_unix();
    let mut c =
        json!({"iss": iss, "aud": aud, "sub": "alice", "iat": now, "nbf": now, "exp": now + 600});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    key.sign(&c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_https_issuers_from_an_authentication_configuration_each_with_its_rules() {
    let (pki_a, pki_b) = (
        test_pki("corp", &["127.0.0.1"]),
        test_pki("ci", &["127.0.0.1"]),
    );
    let key_a = TestKey::generate("RS256", "a1").unwrap();
    let key_b = TestKey::generate("ES512", "b1").unwrap();
    let corp = MockIssuer::start_tls(vec![key_a.public_jwk()], &pki_a.cert_pem, &pki_a.key_pem)
        .await
        .unwrap();
    let ci = MockIssuer::start_tls(vec![key_b.public_jwk()], &pki_b.cert_pem, &pki_b.key_pem)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let authn = dir.path().join("authn.yaml");
    let yaml = format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {corp_url}
    audiences: [corp-api]
    certificateAuthority: |
{ca_a}
  claimValidationRules:
  - claim: hd
    requiredValue: example.com
  claimMappings:
    username:
      claim: email
      prefix: "corp:"
    groups:
      claim: groups
      prefix: ""
- issuer:
    url: {ci_url}
    audiences: [ci-a, ci-b]
    audienceMatchPolicy: MatchAny
    certificateAuthority: |
{ca_b}
  claimValidationRules:
  - expression: "claims.repository.startsWith('acme/')"
    message: only acme repositories
  claimMappings:
    username:
      expression: "'ci:' + claims.repository"
    extra:
    - key: ci.example.com/ref
      valueExpression: claims.ref
  userValidationRules:
  - expression: "!user.username.endsWith('/secret')"
    message: the secret repository may not call
"#,
        corp_url = corp.issuer_url(),
        ci_url = ci.issuer_url(),
        ca_a = indent(&pki_a.ca_pem, 6).trim_end(),
        ca_b = indent(&pki_b.ca_pem, 6).trim_end(),
    );
    std::fs::write(&authn, yaml).unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let text = proxy_toml(&authn, &upstream.url());
    let h = Harness::start_from_text(text, corp.clone(), upstream, vec![key_a.clone()], true).await;

    // Issuer 1 (RS256), claim mappings with prefixes and a required claim.
    let t = oidc_token(
        &key_a,
        &corp.issuer_url(),
        "corp-api",
        json!({"email": "bob@example.com", "email_verified": true, "hd": "example.com", "groups": ["dev"]}),
    );
    let r = h.get_with_token("/", &t, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["corp:bob@example.com"]
    );
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-group"),
        ["dev", "system:authenticated"]
    );
    let other_hd = oidc_token(
        &key_a,
        &corp.issuer_url(),
        "corp-api",
        json!({"email": "bob@example.com", "hd": "evil.com"}),
    );
    let r = h.get_with_token("/", &other_hd, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_claims"));

    // Issuer 2 (ES512), expressions, either audience.
    let t = oidc_token(
        &key_b,
        &ci.issuer_url(),
        "ci-b",
        json!({"repository": "acme/web", "ref": "refs/heads/main"}),
    );
    let r = h.get_with_token("/", &t, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["ci:acme/web"]
    );
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-extra-ci.example.com%2fref"),
        ["refs/heads/main"]
    );
    for (repo, message) in [
        ("evil/web", "only acme repositories"),
        ("acme/secret", "the secret repository may not call"),
    ] {
        let t = oidc_token(
            &key_b,
            &ci.issuer_url(),
            "ci-a",
            json!({"repository": repo, "ref": "r"}),
        );
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}});
        let r = post_json(
            &h.url("/apis/authentication.k8s.io/v1/tokenreviews"),
            &[],
            &body,
        )
        .await;
        assert_eq!(
            r.json()["status"]["error"],
            format!("invalid_claims: {message}"),
            "{}",
            r.text()
        );
    }
    // Each issuer is named by its position in the file (metrics, logs).
    let metrics = h.metrics().await;
    assert!(metrics.contains("issuer=\"jwt-0\""), "{metrics}");
    assert!(metrics.contains("issuer=\"jwt-1\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_is_trusted_only_through_its_own_certificate_authority() {
    let (pki_a, pki_b) = (
        test_pki("corp", &["127.0.0.1"]),
        test_pki("other", &["127.0.0.1"]),
    );
    let key = TestKey::generate("RS256", "a1").unwrap();
    let corp = MockIssuer::start_tls(vec![key.public_jwk()], &pki_a.cert_pem, &pki_a.key_pem)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let authn = dir.path().join("authn.yaml");
    // Another CA than the one that signed the issuer's certificate.
    std::fs::write(
        &authn,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n- issuer:\n    url: {}\n    audiences: [a]\n    certificateAuthority: |\n{}  claimMappings:\n    username:\n      claim: sub\n      prefix: \"\"\n",
            corp.issuer_url(),
            indent(&pki_b.ca_pem, 6)
        ),
    )
    .unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let text = proxy_toml(&authn, &upstream.url());
    let h = Harness::start_from_text(text, corp.clone(), upstream, vec![key.clone()], false).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = get(&format!("http://{}/readyz", h.admin), &[]).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an untrusted issuer"
    );
    let t = oidc_token(&key, &corp.issuer_url(), "a", json!({}));
    assert_eq!(
        h.get_with_token("/", &t, &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const HEAD: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";

/// The error of loading a config whose authentication_config is `yaml`.
fn load_error(yaml: &str) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let authn = write(dir.path(), "authn.yaml", yaml);
    let e = Config::parse(&proxy_toml(&authn, "http://127.0.0.1:1"), "t.toml").unwrap_err();
    assert!(e.file.ends_with("authn.yaml") || e.file == "t.toml", "{e}");
    (e.file, e.key, e.message)
}

#[test]
fn yaml_errors_name_the_file_and_kube_apiserver_field_path() {
    let jwt = |body: &str| {
        format!("{HEAD}jwt:\n- issuer:\n    url: https://sso.test\n    audiences: [a]\n{body}")
    };
    let cases = [
        (
            jwt("  claimMappings:\n    username:\n      expression: \"claims.sub +\"\n"),
            "jwt[0].claimMappings.username.expression",
        ),
        (
            jwt("  claimMappings:\n    username:\n      claim: sub\n"),
            "jwt[0].claimMappings.username.prefix",
        ),
        (
            jwt("  claimMappings:\n    username:\n      expression: claims.email\n"),
            "jwt[0].claimMappings.username.expression",
        ),
        (
            jwt("  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n  userValidationRules:\n  - expression: \"claims.sub == ''\"\n"),
            "jwt[0].userValidationRules[0].expression",
        ),
        (
            jwt("  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n    extra:\n    - key: kubernetes.io/x\n      valueExpression: claims.x\n"),
            "jwt[0].claimMappings.extra[0].key",
        ),
        (
            format!("{HEAD}jwt:\n- issuer:\n    url: http://sso.test\n    audiences: [a]\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n"),
            "jwt[0].issuer.url",
        ),
        (
            format!("{HEAD}jwt:\n- issuer:\n    url: https://sso.test\n    audiences: [a, b]\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n"),
            "jwt[0].issuer.audienceMatchPolicy",
        ),
        (
            format!("{HEAD}jwt:\n- issuer:\n    url: https://sso.test\n    audiences: [a]\n    certificateAuthority: not a pem\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n"),
            "jwt[0].issuer.certificateAuthority",
        ),
        (
            "apiVersion: apiserver.config.k8s.io/v2\nkind: AuthenticationConfiguration\n".to_string(),
            "apiVersion",
        ),
    ];
    for (yaml, key) in cases {
        let (file, got, message) = load_error(&yaml);
        assert_eq!(got, key, "{message}\n{yaml}");
        assert!(file.ends_with("authn.yaml"), "{file}");
    }
    let (_, key, message) = load_error(&jwt("  claimMapings: {}\n"));
    assert_eq!(key, "(syntax)");
    assert!(message.contains("claimMapings"), "{message}");
}

#[test]
fn check_config_warns_about_fields_that_do_not_apply_and_exits_64_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let authn = write(
        dir.path(),
        "authn.yaml",
        &format!("{HEAD}anonymous:\n  enabled: true\n  conditions:\n  - path: /livez\njwt:\n- issuer:\n    url: https://sso.test\n    audiences: [a]\n    egressSelectorType: controlplane\n  claimMappings:\n    username:\n      claim: sub\n      prefix: 'sso:'\n"),
    );
    let cfg = write(
        dir.path(),
        "proxy.toml",
        &proxy_toml(Path::new("authn.yaml"), "http://127.0.0.1:1"),
    );
    let run = |cfg: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tokenreview-proxy"))
            .args(["check-config", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    let o = run(&cfg);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("anonymous"), "{all}");
    assert!(all.contains("egressSelectorType"), "{all}");
    assert!(
        all.contains("issuer \"jwt-0\": iss https://sso.test"),
        "{all}"
    );
    assert!(all.contains(&authn.display().to_string()), "{all}");

    std::fs::write(&authn, format!("{HEAD}jwt:\n- issuer:\n    url: https://sso.test\n    audiences: [a]\n  claimValidationRules:\n  - expression: 'claims.x =='\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n")).unwrap();
    let o = run(&cfg);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("authn.yaml"), "{err}");
    assert!(
        err.contains("jwt[0].claimValidationRules[0].expression"),
        "{err}"
    );
}
