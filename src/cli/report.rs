//! `inspect --config`: every check the token fails against a config, each with what was
//! expected (the configured issuers, the audiences, the key ids, the validity window), then
//! the authenticator's own verdict. Keys are fetched only for the issuer the token names.
//! Everything goes to stdout; logs stay on stderr.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use crate::auth::{Audiences, AuthError, Authenticator};
use crate::bound::{self, Binding, BoundObjects};
use crate::config::{ClaimsMode, Config};
use crate::jwks;
use crate::verify::{self, now_unix, Reject, TokenTimes};

/// One line of the report: a check, and what failed with what was expected.
struct Check {
    name: &'static str,
    failed: Option<(Reject, String)>,
    detail: String,
}

/// What each reason means for an operator reading `inspect`.
pub fn explain(reason: Reject) -> &'static str {
    match reason {
        Reject::Malformed => "not a compact JWS: three base64url (unpadded) segments of JSON",
        Reject::TooLarge => "longer than server.max_header_bytes",
        Reject::UnsupportedAlgorithm => {
            "alg is none/HS*, not in the issuer's algorithms, or does not fit the key"
        }
        Reject::ForbiddenHeader => "header carries crit, jku, x5u, jwk, x5c or cty: JWT",
        Reject::UnknownIssuer => "iss matches no configured issuer",
        Reject::UnknownKey => "kid not in the issuer's JWKS (even after a refetch)",
        Reject::BadSignature => "signature does not verify with the issuer's key",
        Reject::Expired => "exp is in the past (beyond clock_skew)",
        Reject::NotYetValid => "nbf is in the future (beyond clock_skew)",
        Reject::IssuedInFuture => "iat is in the future (beyond clock_skew)",
        Reject::LifetimeExceeded => "exp - iat exceeds the issuer's max_lifetime",
        Reject::AudienceMismatch => "aud shares no value with the issuer's audiences",
        Reject::InvalidClaims => {
            "missing/mistyped exp, duplicate claims, sub disagrees with the kubernetes.io claim, or an OIDC claim mapping or rule refused it"
        }
        Reject::LegacyToken => "a Secret-based legacy token, and legacy_tokens = false",
        Reject::Invalidated => {
            "the token's service account, pod, secret or node is gone (deleted, or recreated with another uid)"
        }
    }
}

fn at(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn quoted(list: &[String]) -> String {
    let v: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", v.join(", "))
}

/// Print the report for `token` against `config`; exit 0 when the authenticator accepts it.
pub async fn verify_report(token: &str, config: &Config) -> ExitCode {
    crate::metrics::install();
    let auth = Authenticator::new(
        config,
        config
            .issuers
            .iter()
            .cloned()
            .map(|c| std::sync::Arc::new(jwks::Issuer::new(c)))
            .collect(),
    );
    println!("checks against {}:", config.source);
    let t = match verify::parse(token, config.server.max_header_bytes) {
        Ok(t) => t,
        Err(r) => {
            println!("  FAIL  {}: {}", r.as_str(), explain(r));
            println!("REJECTED: {} — {}", r.as_str(), explain(r));
            return ExitCode::from(1);
        }
    };
    let mut checks = Vec::new();
    let iss = t.claims.iss.clone().unwrap_or_default();
    let selected = auth
        .issuers
        .select(&iss)
        .map(|(i, legacy)| (i.clone(), legacy));
    let configured: Vec<String> = config
        .issuers
        .iter()
        .map(|i| format!("{:?} ({})", i.name, i.issuer))
        .collect();
    checks.push(Check {
        name: "issuer",
        failed: selected.is_none().then(|| {
            (
                Reject::UnknownIssuer,
                format!("iss {iss:?}; configured: {}", configured.join(", ")),
            )
        }),
        detail: selected
            .as_ref()
            .map_or(String::new(), |(i, _)| format!("{:?}", i.name())),
    });
    let Some((issuer, legacy)) = selected else {
        return finish(&auth, token, checks).await;
    };
    let cfg = issuer.cfg();
    if legacy && !cfg.legacy_tokens {
        checks.push(fail(
            "legacy",
            Reject::LegacyToken,
            "legacy_tokens = false".into(),
        ));
    }
    let algs: Vec<&str> = cfg.algorithms.iter().map(|a| a.as_str()).collect();
    checks.push(Check {
        name: "algorithm",
        failed: (!cfg.algorithms.contains(&t.alg)).then(|| {
            (
                Reject::UnsupportedAlgorithm,
                format!("{}; allowed: {}", t.alg.as_str(), algs.join(", ")),
            )
        }),
        detail: t.alg.as_str().into(),
    });
    let policy = issuer.policy();
    match TokenTimes::read(&t.claims, !legacy) {
        Err(r) => checks.push(fail("times", r, "exp, nbf and iat must be numbers".into())),
        Ok(times) => {
            let now = now_unix();
            let window = format!(
                "valid from {} until {}, now {} (clock_skew {}s, max_lifetime {})",
                times.nbf.or(times.iat).map_or("-".into(), at),
                times.exp.map_or("never".into(), at),
                at(now),
                policy.clock_skew,
                humantime::format_duration(Duration::from_secs(policy.max_lifetime.max(0) as u64))
            );
            let failed: Vec<Reject> = times.failures(now, policy).into_iter().flatten().collect();
            if failed.is_empty() {
                checks.push(Check {
                    name: "validity",
                    failed: None,
                    detail: window.clone(),
                });
            }
            for r in failed {
                checks.push(fail("validity", r, window.clone()));
            }
        }
    }
    if !legacy {
        let token_aud = match &t.claims.aud {
            Some(verify::Audience::One(a)) => vec![a.clone()],
            Some(verify::Audience::Many(v)) => v.clone(),
            None => Vec::new(),
        };
        let expected = &cfg.audiences;
        checks.push(Check {
            name: "audience",
            failed: verify::audience_intersection(&t.claims, expected)
                .err()
                .map(|r| {
                    let detail = format!(
                        "token {}; expected one of {}",
                        quoted(&token_aud),
                        quoted(expected)
                    );
                    (r, detail)
                }),
            detail: quoted(&token_aud),
        });
        if cfg.claims == ClaimsMode::Kubernetes {
            checks.push(Check {
                name: "claims",
                failed: verify::check_kubernetes_claims(&t.claims).err().map(|r| {
                    (
                        r,
                        "sub system:serviceaccount:<ns>:<name>, agreeing with kubernetes.io".into(),
                    )
                }),
                detail: t.claims.sub.clone().unwrap_or_default(),
            });
        }
    }
    // Keys: only this issuer's.
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(jwks::run_refresher(issuer.keys.clone(), stop_rx));
    if !jwks::wait_ready(std::slice::from_ref(&issuer.keys), Duration::from_secs(10)).await {
        eprintln!(
            "warning: issuer {:?} has no usable keys after 10s (see the log above)",
            issuer.name()
        );
    }
    let set = issuer.keys.store.current();
    let kids: Vec<String> = set.keys.iter().filter_map(|k| k.kid.clone()).collect();
    let signature = verify::verify_signature(&t, &set);
    checks.push(Check {
        name: "key",
        failed: (signature.as_ref().err() == Some(&Reject::UnknownKey)).then(|| {
            (
                Reject::UnknownKey,
                format!(
                    "kid {}; the issuer's key ids: {}",
                    kid_shown(&t.kid),
                    quoted(&kids)
                ),
            )
        }),
        detail: kid_shown(&t.kid),
    });
    if let Err(r) = signature {
        if r != Reject::UnknownKey {
            checks.push(fail("signature", r, explain(r).into()));
        }
    }
    // Bound objects: the ones this token names, read once from the cluster.
    let mut bound = None;
    if cfg.bound_objects {
        let binding = Binding::from_claims(&t.claims, legacy);
        match bound::fetch_binding_objects(&config.kubernetes, &binding).await {
            Ok(found) => {
                let detail: Vec<String> = found
                    .iter()
                    .map(|(k, ns, name, s)| {
                        let at = if *k == bound::Kind::Nodes {
                            name.clone()
                        } else {
                            format!("{ns}/{name}")
                        };
                        let state = if s.is_some() { "present" } else { "not found" };
                        format!("{} {at} {state}", k.singular())
                    })
                    .collect();
                let present: Vec<_> = found
                    .into_iter()
                    .filter_map(|(k, ns, name, s)| Some((k, ns, name, s?)))
                    .collect();
                let objects = std::sync::Arc::new(BoundObjects::fetched(&present));
                checks.push(Check {
                    name: "bound objects",
                    failed: objects
                        .check(&binding)
                        .err()
                        .map(|i| (Reject::Invalidated, i.to_string())),
                    detail: detail.join(", "),
                });
                bound = Some(objects);
            }
            Err(e) => eprintln!("warning: cannot read the token's bound objects: {e}"),
        }
    }
    finish(&auth.with_bound_objects(bound), token, checks).await
}

fn kid_shown(kid: &Option<String>) -> String {
    kid.as_ref()
        .map_or_else(|| "(none)".to_string(), |k| format!("{k:?}"))
}

fn fail(name: &'static str, r: Reject, expected: String) -> Check {
    Check {
        name,
        failed: Some((r, expected)),
        detail: String::new(),
    }
}

async fn finish(auth: &Authenticator, token: &str, checks: Vec<Check>) -> ExitCode {
    let mut failed = Vec::new();
    for c in &checks {
        match &c.failed {
            None => println!("  ok    {}: {}", c.name, c.detail),
            Some((r, expected)) => {
                println!("  FAIL  {} ({}): {expected}", c.name, r.as_str());
                failed.push(*r);
            }
        }
    }
    if let Some(first) = failed.first() {
        let all: Vec<&str> = failed.iter().map(|r| r.as_str()).collect();
        println!("REJECTED: {} — {}", all.join(", "), explain(*first));
        return ExitCode::from(1);
    }
    // Every check above passed: the authenticator gives the verdict and the identity.
    match auth.authenticate(token, Audiences::Configured).await {
        Ok(v) => {
            let id = v.identity();
            println!(
                "VERIFIED by issuer {:?}: {}",
                v.issuer().name(),
                id.username
            );
            println!("  uid:    {}", id.uid);
            println!("  groups: {:?}", id.groups);
            for (k, vals) in &id.extra {
                println!("  extra:  {k} = {vals:?}");
            }
            if let Some(rules) = &v.issuer().cfg().claim_rules {
                println!("  mapped by: {}", rules.describe());
            }
            ExitCode::SUCCESS
        }
        Err(AuthError::Rejected(r)) => {
            match &r.message {
                // A claim mapping or rule said no: its message is the reason.
                Some(m) => {
                    println!("  FAIL  claim rules ({}): {m}", r.reason.as_str());
                    println!("REJECTED: {} — {m}", r.reason.as_str());
                }
                None => println!("REJECTED: {} — {}", r.reason.as_str(), explain(r.reason)),
            }
            ExitCode::from(1)
        }
        Err(AuthError::BoundObjectsStale { issuer }) => {
            println!(
                "UNDECIDED: issuer {:?} has bound_objects and the cluster state could not be read",
                issuer.name()
            );
            ExitCode::from(1)
        }
        Err(AuthError::Unavailable { issuer }) => {
            println!(
                "UNDECIDED: issuer {:?} has no usable keys (unreachable?)",
                issuer.name()
            );
            ExitCode::from(1)
        }
    }
}
