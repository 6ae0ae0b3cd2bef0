//! Claim rules and mappings (SPEC section 13) over real sockets: the proxy is started against
//! a mock OIDC issuer, tokens go through it, and what the upstream receives (the X-Remote-*
//! headers) or the 401 reason, and TokenReview's `status.error`, are what is asserted. Each
//! kube-apiserver behaviour named in the spec (`email_verified`, empty CEL usernames, extra
//! keys and empty values, evaluation errors, user rules before the `system:` refusal) has a
//! case here.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{json, Value};
use tokenreview_proxy::dev;

/// Every rule and mapping form of the SPEC's example, on one OIDC issuer.
const RULES: &str = r#"
claims = "oidc"
[[issuers.claim_validation_rules]]
claim = "hd"
required_value = "example.com"
[[issuers.claim_validation_rules]]
expression = "claims.exp - claims.nbf <= 86400"
message = "total token lifetime must not exceed 24 hours"
[issuers.claim_mappings]
username_expression = '"oidc:" + claims.sub'
groups_expression = "claims.roles"
uid_expression = "claims.sub"
extra = [
  { key = "example.com/tenant", value_expression = "claims.tenant" },
  { key = "example.com/empty", value_expression = "''" },
]
[[issuers.user_validation_rules]]
expression = "!user.username.startsWith('oidc:admin')"
message = "admins must use the admin issuer"
"#;

async fn start(rules: &str) -> Harness {
    Harness::start_with(Opts {
        issuer_extra: rules.to_string(),
        ..Opts::default()
    })
    .await
}

/// A token for the harness's issuer: the registered claims, then `extra` merged in (a `null`
/// removes a claim).
fn token(h: &Harness, extra: Value) -> String {
    let now = dev::now_unix();
    let mut claims = json!({
        "iss": h.issuer.issuer_url(), "aud": AUD, "sub": "alice",
        "iat": now, "nbf": now, "exp": now + 600,
        "hd": "example.com", "roles": ["dev", "ops"], "tenant": "t1",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    h.key().sign(&claims)
}

async fn review(h: &Harness, token: &str) -> Value {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token},
    });
    let r = post_json(
        &h.url("/apis/authentication.k8s.io/v1/tokenreviews"),
        &[],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["status"].clone()
}

/// The 401 reason through the proxy, and TokenReview's `status.error`, for one token.
async fn refusal(h: &Harness, token: &str) -> (String, String) {
    let r = h.get_with_token("/", token, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap();
    let status = review(h, token).await;
    assert_eq!(status["authenticated"], false);
    (
        challenge,
        status["error"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn every_rule_and_mapping_form_accepts_and_forwards_the_mapped_identity() {
    let h = start(RULES).await;
    let t = token(&h, json!({}));
    let r = h.get_with_token("/x", &t, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let up = &h.upstream;
    assert_eq!(recorded_header(up, "x-remote-user"), ["oidc:alice"]);
    assert_eq!(recorded_header(up, "x-remote-uid"), ["alice"]);
    assert_eq!(
        recorded_header(up, "x-remote-group"),
        ["dev", "ops", "system:authenticated"]
    );
    assert_eq!(
        recorded_header(up, "x-remote-extra-example.com%2ftenant"),
        ["t1"]
    );
    // An expression that yields "" is no value: the key is dropped.
    assert!(recorded_header(up, "x-remote-extra-example.com%2fempty").is_empty());
    let status = review(&h, &t).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["user"]["username"], "oidc:alice");
    assert_eq!(status["user"]["extra"]["example.com/tenant"], json!(["t1"]));
    assert!(status["user"]["extra"].get("example.com/empty").is_none());
}

#[tokio::test]
async fn each_failed_rule_is_invalid_claims_with_its_message_in_tokenreview_and_the_log() {
    let h = start(RULES).await;
    let cases = [
        // A claim validation expression.
        (
            json!({"exp": dev::now_unix() + 90_000}),
            "total token lifetime must not exceed 24 hours",
        ),
        // claim + required_value: wrong value, then missing.
        (json!({"hd": "evil.com"}), "required claim \"hd\""),
        (json!({"hd": null}), "required claim \"hd\" is not present"),
        // A user validation rule.
        (json!({"sub": "admin7"}), "admins must use the admin issuer"),
        // A mapping that cannot be evaluated (CEL error: no such key) rejects.
        (
            json!({"tenant": null}),
            "error evaluating the extra value expression",
        ),
        // A groups expression of the wrong type.
        (
            json!({"roles": 5}),
            "must return a string or a list of strings",
        ),
    ];
    for (claims, message) in cases {
        let t = token(&h, claims.clone());
        let (challenge, error) = refusal(&h, &t).await;
        assert!(
            challenge.contains(r#"error_description="invalid_claims""#),
            "{claims}: {challenge}"
        );
        // The 401 says the reason only; the message is for TokenReview and the log.
        assert!(!challenge.contains(message), "{challenge}");
        assert!(error.starts_with("invalid_claims: "), "{claims}: {error}");
        assert!(error.contains(message), "{claims}: {error}");
        let logs = captured_logs();
        assert!(logs.contains(message), "{message} not logged");
        assert!(!logs.contains(&t), "a token reached the log");
    }
}

#[tokio::test]
async fn email_username_needs_email_verified_true_when_present() {
    let h = start(
        "claims = \"oidc\"\n[issuers.claim_mappings]\nusername = \"email\"\nusername_prefix = \"oidc:\"\n",
    )
    .await;
    let ok = token(
        &h,
        json!({"email": "bob@example.com", "email_verified": true}),
    );
    assert_eq!(h.get_with_token("/", &ok, &[]).await.status, StatusCode::OK);
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["oidc:bob@example.com"]
    );
    // Absent: accepted, as kube-apiserver does.
    let absent = token(&h, json!({"email": "carol@example.com"}));
    assert_eq!(
        h.get_with_token("/", &absent, &[]).await.status,
        StatusCode::OK
    );
    let unverified = token(
        &h,
        json!({"email": "eve@example.com", "email_verified": false}),
    );
    let (_, error) = refusal(&h, &unverified).await;
    assert_eq!(error, "invalid_claims: email not verified");
    let not_bool = token(
        &h,
        json!({"email": "eve@example.com", "email_verified": "yes"}),
    );
    let (_, error) = refusal(&h, &not_bool).await;
    assert!(error.contains("email_verified"), "{error}");
}

#[tokio::test]
async fn a_username_expression_yielding_empty_rejects_the_token() {
    let h = start(
        "claims = \"oidc\"\n[issuers.claim_mappings]\nusername_expression = \"claims.email_verified ? claims.email : ''\"\n",
    )
    .await;
    let ok = token(
        &h,
        json!({"email": "a@example.com", "email_verified": true}),
    );
    assert_eq!(h.get_with_token("/", &ok, &[]).await.status, StatusCode::OK);
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["a@example.com"]
    );
    let empty = token(
        &h,
        json!({"email": "a@example.com", "email_verified": false}),
    );
    let (challenge, error) = refusal(&h, &empty).await;
    assert!(challenge.contains("invalid_claims"));
    assert!(error.contains("empty username"), "{error}");
}

#[tokio::test]
async fn user_rules_run_before_the_proxys_refusal_of_system_names() {
    let rules = r#"
claims = "oidc"
[issuers.claim_mappings]
username = "sub"
[[issuers.user_validation_rules]]
expression = "!user.username.startsWith('system:')"
message = "username cannot use the reserved system: prefix"
"#;
    let h = start(rules).await;
    let (_, error) = refusal(&h, &token(&h, json!({"sub": "system:admin"}))).await;
    assert_eq!(
        error,
        "invalid_claims: username cannot use the reserved system: prefix"
    );
    // Without the rule, the proxy's own refusal (a system: group here).
    let h = start("claims = \"oidc\"\n[issuers.claim_mappings]\ngroups = \"roles\"\n").await;
    let t = token(&h, json!({"roles": ["system:masters"]}));
    let (_, error) = refusal(&h, &t).await;
    assert!(error.contains("reserved system: namespace"), "{error}");
}

#[tokio::test]
async fn an_oidc_token_with_a_jti_carries_a_credential_id_as_in_kube_apiserver() {
    let h = start("claims = \"oidc\"\n").await;
    let t = token(&h, json!({"jti": "abc"}));
    assert_eq!(h.get_with_token("/", &t, &[]).await.status, StatusCode::OK);
    assert_eq!(
        recorded_header(
            &h.upstream,
            "x-remote-extra-authentication.kubernetes.io%2fcredential-id"
        ),
        ["JTI=abc"]
    );
    assert_eq!(recorded_header(&h.upstream, "x-remote-user"), ["alice"]);
}

#[test]
fn a_bad_expression_exits_64_naming_the_file_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = config_text(
        &Opts {
            issuer_extra: "claims = \"oidc\"\n[[issuers.claim_validation_rules]]\nexpression = \"true\"\n[[issuers.claim_validation_rules]]\nexpression = \"claims.exp >\"\nmessage = \"m\"\n".into(),
            ..Opts::default()
        },
        "https://issuer.test",
        "http://127.0.0.1:1",
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenreview-proxy"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(
        stderr.contains("issuers[0].claim_validation_rules[1].expression"),
        "{stderr}"
    );
}

/// Rules run on a cache miss only: a token refused by a rule is decided once, then answered
/// from the negative cache (same reason, same message) without evaluating the rule again, so
/// its log line appears once however often it is sent.
#[tokio::test]
async fn rules_run_once_per_token_and_repeats_are_answered_from_the_cache() {
    let rules = r#"
claims = "oidc"
[[issuers.claim_validation_rules]]
expression = "claims.tenant != 'blocked-once'"
message = "tenant blocked-once is refused"
"#;
    let h = start(rules).await;
    let t = token(&h, json!({"tenant": "blocked-once"}));
    for _ in 0..3 {
        let (challenge, error) = refusal(&h, &t).await;
        assert!(challenge.contains("invalid_claims"));
        assert_eq!(error, "invalid_claims: tenant blocked-once is refused");
    }
    let logged = captured_logs()
        .matches("tenant blocked-once is refused")
        .count();
    assert_eq!(logged, 1, "the rule ran more than once");
    let ok = token(&h, json!({"tenant": "t2"}));
    for _ in 0..2 {
        assert_eq!(h.get_with_token("/", &ok, &[]).await.status, StatusCode::OK);
    }
}
