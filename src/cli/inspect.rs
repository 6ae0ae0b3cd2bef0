//! `inspect`: decode a token without trusting it and describe its claims (issuer, audiences,
//! expiry, bindings, kind); with `--config`, verify it against that config's issuers and say
//! why it would be rejected.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;

use super::args::InspectArgs;
use super::common::{failure, load_config};
use crate::verify::LEGACY_ISSUER;

fn describe_remaining(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let human = humantime::format_duration(Duration::from_secs(a)).to_string();
    if secs >= 0 {
        format!("in {human}")
    } else {
        format!("{human} ago")
    }
}

pub fn inspect(args: &InspectArgs) -> ExitCode {
    let token = match args.token.as_deref() {
        Some(t) if t != "-" => t.trim().to_string(),
        _ => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                return failure(format!("reading standard input: {e}"));
            }
            s.trim().to_string()
        }
    };
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(&token)
        .trim()
        .to_string();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return failure(format!(
            "not a compact JWS: {} segments instead of 3",
            segments.len()
        ));
    }
    let decode = |s: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&b64.decode(s).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(segments[0]), decode(segments[1])) else {
        return failure("header or payload is not base64url-encoded JSON");
    };
    println!("UNVERIFIED — decoded without checking the signature");
    println!(
        "header: {}",
        serde_json::to_string_pretty(&header).unwrap_or_default()
    );
    println!(
        "claims: {}",
        serde_json::to_string_pretty(&claims).unwrap_or_default()
    );
    let now = crate::verify::now_unix();
    let num = |k: &str| claims.get(k).and_then(|v| v.as_f64()).map(|f| f as i64);
    let iss = claims
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or("(none)");
    println!("issuer:    {iss}");
    println!(
        "audiences: {}",
        claims.get("aud").map_or("(none)".into(), |a| a.to_string())
    );
    match num("exp") {
        Some(exp) => println!("expires:   {} ({exp})", describe_remaining(exp - now)),
        None => println!("expires:   never (no exp)"),
    }
    if let (Some(exp), Some(iat)) = (num("exp"), num("iat")) {
        println!(
            "lifetime:  {}",
            humantime::format_duration(Duration::from_secs((exp - iat).max(0) as u64))
        );
    }
    let kube = claims.get("kubernetes.io");
    if let Some(w) = kube
        .and_then(|k| k.get("warnafter"))
        .and_then(|v| v.as_f64())
    {
        let w = w as i64;
        let note = if now > w {
            " — past it: this client is caching its token instead of re-reading the file"
        } else {
            ""
        };
        println!("warnafter: {}{note}", describe_remaining(w - now));
    }
    for (what, field) in [("pod", "pod"), ("node", "node"), ("secret", "secret")] {
        if let Some(obj) = kube.and_then(|k| k.get(field)) {
            println!(
                "bound {what}: {} (uid {})",
                obj.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                obj.get("uid").and_then(|v| v.as_str()).unwrap_or("?")
            );
        }
    }
    let kind = if iss == LEGACY_ISSUER {
        "legacy Secret-based service-account token (never expires; deprecated)"
    } else if kube.is_some() {
        "bound service-account token (projected, audience-bound, expiring)"
    } else {
        "generic JWT (OIDC)"
    };
    println!("kind:      {kind}");

    let Some(config_path) = &args.config else {
        return ExitCode::SUCCESS;
    };
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(e),
    };
    rt.block_on(super::report::verify_report(&token, &config))
}
