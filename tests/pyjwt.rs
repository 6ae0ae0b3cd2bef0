//! Interop: tokens minted by PyJWT (with keys `cryptography` generated and PyJWT published as
//! JWKs) verified by the proxy over real sockets: ES512 and RS256 OIDC tokens with custom
//! claims through an issuer with claim rules and mappings. Needs `python3` with
//! `pyjwt[crypto]`; with `CI` set a missing module fails the test, else it is skipped loudly.

mod common;

use std::io::Write as _;
use std::process::Command;

use common::*;
use http::StatusCode;
use serde_json::Value;
use tokenreview_proxy::dev::{MockIssuer, TestKey};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyjwt_tokens.py");
const EXIT_NO_MODULE: i32 = 3;

const RULES: &str = r#"
claims = "oidc"
[[issuers.claim_validation_rules]]
claim = "hd"
required_value = "example.com"
[issuers.claim_mappings]
username = "email"
username_prefix = "oidc:"
groups = "groups"
groups_prefix = "oidc:"
extra = [{ key = "example.com/tenant", value_expression = "claims.tenant" }]
"#;

fn pyjwt(issuer: &str) -> Option<Value> {
    let out = Command::new("python3").args([SCRIPT, issuer, AUD]).output();
    let missing = match &out {
        Err(e) => Some(format!("cannot run python3: {e}")),
        Ok(o) if o.status.code() == Some(EXIT_NO_MODULE) => {
            Some(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
        Ok(_) => None,
    };
    if let Some(why) = missing {
        let msg = format!("PyJWT is required for this test ({why}); install it with `pip install 'pyjwt[crypto]'`");
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        let banner = format!("\n!!!!!!!! SKIPPED pyjwt interop !!!!!!!!\n!!! {msg}\n!!! (with CI set, this is a failure)\n\n");
        let _ = std::io::stderr().write_all(banner.as_bytes());
        return None;
    }
    let o = out.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).expect("the script prints JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_es512_and_rs256_oidc_tokens_with_custom_claims_verify_and_map() {
    // The issuer starts with a placeholder key; PyJWT's keys replace it.
    let placeholder = TestKey::generate("ES256", "placeholder").unwrap();
    let issuer = MockIssuer::start(vec![placeholder.public_jwk()])
        .await
        .unwrap();
    let Some(py) = pyjwt(&issuer.issuer_url()) else {
        return;
    };
    let jwks: Vec<Value> = py["jwks"].as_array().unwrap().clone();
    assert_eq!(jwks[0]["crv"], "P-521", "{jwks:?}");
    issuer.set_keys(jwks);
    let h = Harness::start_with_issuer(
        Opts {
            issuer_extra: RULES.into(),
            ..Opts::default()
        },
        issuer,
        vec![placeholder],
    )
    .await;
    let token = |name: &str| py["tokens"][name].as_str().unwrap().to_string();

    for (name, user) in [
        ("es512", "oidc:alice@example.com"),
        ("rs256", "oidc:bob@example.com"),
    ] {
        let r = h.get_with_token("/", &token(name), &[]).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{name} (PyJWT {}): {}",
            py["pyjwt"],
            r.text()
        );
        assert_eq!(
            recorded_header(&h.upstream, "x-remote-user"),
            [user],
            "{name}"
        );
        assert_eq!(
            recorded_header(&h.upstream, "x-remote-group"),
            ["oidc:dev", "oidc:ops", "system:authenticated"]
        );
        assert_eq!(
            recorded_header(&h.upstream, "x-remote-extra-example.com%2ftenant"),
            ["t1"]
        );
        assert_eq!(
            recorded_header(
                &h.upstream,
                "x-remote-extra-authentication.kubernetes.io%2fcredential-id"
            ),
            ["JTI=pyjwt-1"]
        );
    }
    for name in ["es512_other_domain", "es512_unverified_email"] {
        let r = h.get_with_token("/", &token(name), &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("invalid_claims"),
            "{name}"
        );
    }
}
