//! Token verification rules (SPEC section 4), as pure functions over a parsed token.
//!
//! Order matters for cost, not for safety: everything that needs no key (shape, header rules,
//! issuer, time, lifetime, audience, Kubernetes claim shape) is checked before any signature
//! work, so a flood of bogus tokens costs JSON parsing, not RSA. A token is accepted only after
//! every rule, including the signature, has passed.

use base64::Engine;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::keys::{Alg, KeySet, VerifyingKey};

/// Why a token was rejected. `as_str` is the reason code of SPEC section 7: it is the
/// `error_description`, the TokenReview `status.error`, and the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    Malformed,
    TooLarge,
    UnsupportedAlgorithm,
    ForbiddenHeader,
    UnknownIssuer,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeExceeded,
    AudienceMismatch,
    InvalidClaims,
    LegacyToken,
    /// The token's service account, pod, secret or node is gone (SPEC section 12).
    Invalidated,
}

impl Reject {
    pub const ALL: [Reject; 15] = [
        Reject::Malformed,
        Reject::TooLarge,
        Reject::UnsupportedAlgorithm,
        Reject::ForbiddenHeader,
        Reject::UnknownIssuer,
        Reject::UnknownKey,
        Reject::BadSignature,
        Reject::Expired,
        Reject::NotYetValid,
        Reject::IssuedInFuture,
        Reject::LifetimeExceeded,
        Reject::AudienceMismatch,
        Reject::InvalidClaims,
        Reject::LegacyToken,
        Reject::Invalidated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::TooLarge => "too_large",
            Reject::UnsupportedAlgorithm => "unsupported_algorithm",
            Reject::ForbiddenHeader => "forbidden_header",
            Reject::UnknownIssuer => "unknown_issuer",
            Reject::UnknownKey => "unknown_key",
            Reject::BadSignature => "bad_signature",
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::IssuedInFuture => "issued_in_future",
            Reject::LifetimeExceeded => "lifetime_exceeded",
            Reject::AudienceMismatch => "audience_mismatch",
            Reject::InvalidClaims => "invalid_claims",
            Reject::LegacyToken => "legacy_token",
            Reject::Invalidated => "invalidated",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `iss` of Secret-based (legacy) service-account tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    cty: Option<String>,
    #[serde(default)]
    crit: Present,
    #[serde(default)]
    jku: Present,
    #[serde(default)]
    x5u: Present,
    #[serde(default)]
    jwk: Present,
    #[serde(default)]
    x5c: Present,
}

/// A header member whose presence alone matters, whatever its value: unlike
/// `Option<IgnoredAny>`, a JSON `null` counts as present.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// `cty` of a nested JWT: `JWT`, or with the `application/` prefix that RFC 7515 section
/// 4.1.10 says a short value implies (media types are case-insensitive).
fn is_nested_jwt(cty: &str) -> bool {
    cty.eq_ignore_ascii_case("jwt") || cty.eq_ignore_ascii_case("application/jwt")
}

/// RFC 7515 section 4 and RFC 7519 section 7.2: the header and the claims set are JSON
/// objects. Derived struct deserializers would also read a positional JSON array.
fn is_json_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

/// `aud`: one string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Debug)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

// By hand rather than `#[serde(untagged)]`: untagged buffers the value and builds an error for
// every variant that does not match, on every cache miss.
impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(a) = seq.next_element::<String>()? {
                    all.push(a);
                }
                Ok(Audience::Many(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NameUid {
    pub name: Option<String>,
    pub uid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct KubeClaims {
    pub namespace: Option<String>,
    pub serviceaccount: Option<NameUid>,
    pub pod: Option<NameUid>,
    pub node: Option<NameUid>,
    pub secret: Option<NameUid>,
    pub warnafter: Option<serde_json::Value>,
}

/// The registered and Kubernetes claims we read. Derived deserialization rejects duplicate
/// keys among these, so a token cannot say two different things about `exp` or `sub`.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<Audience>,
    pub exp: Option<serde_json::Value>,
    pub nbf: Option<serde_json::Value>,
    pub iat: Option<serde_json::Value>,
    pub jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    pub kube: Option<KubeClaims>,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    pub legacy_namespace: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    pub legacy_sa_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    pub legacy_sa_uid: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    pub legacy_secret_name: Option<String>,
}

/// A token split and decoded, not yet trusted.
pub struct ParsedToken<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Claims,
    /// The decoded payload JSON (OIDC claim mapping reads arbitrary claims from it).
    pub payload: Vec<u8>,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn decode_segment(s: &str) -> Result<Vec<u8>, Reject> {
    // URL_SAFE_NO_PAD rejects '=' padding, '+' and '/', and non-canonical trailing bits.
    if s.is_empty() {
        return Err(Reject::Malformed);
    }
    B64.decode(s).map_err(|_| Reject::Malformed)
}

/// Split, decode and check the header rules. `max_len` is `server.max_header_bytes`.
pub fn parse(token: &str, max_len: usize) -> Result<ParsedToken<'_>, Reject> {
    if token.len() > max_len {
        return Err(Reject::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed);
    };
    let header_bytes = decode_segment(h)?;
    if !is_json_object(&header_bytes) {
        return Err(Reject::Malformed);
    }
    let header: RawHeader = serde_json::from_slice(&header_bytes).map_err(|_| Reject::Malformed)?;
    let alg_name = header.alg.as_deref().ok_or(Reject::Malformed)?;
    // `none`, every HS*, and anything unknown: never.
    let alg = Alg::parse(alg_name).ok_or(Reject::UnsupportedAlgorithm)?;
    if header.crit.0
        || header.jku.0
        || header.x5u.0
        || header.jwk.0
        || header.x5c.0
        || header.cty.as_deref().is_some_and(is_nested_jwt)
    {
        return Err(Reject::ForbiddenHeader);
    }
    let payload = decode_segment(p)?;
    if !is_json_object(&payload) {
        return Err(Reject::Malformed);
    }
    let claims: Claims = serde_json::from_slice(&payload).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            // Valid JSON of the wrong shape: a claim of the wrong type, or a duplicate.
            Reject::InvalidClaims
        } else {
            Reject::Malformed
        }
    })?;
    let signature = decode_segment(s)?;
    Ok(ParsedToken {
        alg,
        kid: header.kid,
        claims,
        payload,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
    })
}

/// Seconds since the Unix epoch, the clock every time rule reads.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The time and lifetime policy of one issuer.
#[derive(Debug, Clone, Copy)]
pub struct TimePolicy {
    pub clock_skew: i64,
    pub max_lifetime: i64,
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional). `Err` when not a number.
fn numeric_date(v: &serde_json::Value) -> Result<i64, Reject> {
    match v.as_f64() {
        Some(f) if f.is_finite() => Ok(f.floor() as i64), // `as` saturates
        _ => Err(Reject::InvalidClaims),
    }
}

/// Check `exp`, `nbf`, `iat` and lifetime against `now` (unix seconds). Returns `exp`.
/// `require_exp` is false only for accepted legacy tokens.
pub fn check_times(
    claims: &Claims,
    now: i64,
    policy: TimePolicy,
    require_exp: bool,
) -> Result<Option<i64>, Reject> {
    let times = TokenTimes::read(claims, require_exp)?;
    match times.failures(now, policy).into_iter().flatten().next() {
        Some(r) => Err(r),
        None => Ok(times.exp),
    }
}

/// A token's `exp`, `nbf` and `iat`, read as NumericDates.
#[derive(Debug, Clone, Copy)]
pub struct TokenTimes {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl TokenTimes {
    /// `Err(InvalidClaims)` for a claim that is not a number, or a missing `exp` when required.
    pub fn read(claims: &Claims, require_exp: bool) -> Result<TokenTimes, Reject> {
        let exp = match &claims.exp {
            Some(v) => Some(numeric_date(v)?),
            None if require_exp => return Err(Reject::InvalidClaims),
            None => None,
        };
        Ok(TokenTimes {
            exp,
            nbf: claims.nbf.as_ref().map(numeric_date).transpose()?,
            iat: claims.iat.as_ref().map(numeric_date).transpose()?,
        })
    }

    /// Each time rule on its own, in the order they are checked: expired, not yet valid,
    /// issued in the future, lifetime exceeded.
    pub fn failures(&self, now: i64, policy: TimePolicy) -> [Option<Reject>; 4] {
        let late = now.saturating_add(policy.clock_skew);
        [
            self.exp
                .filter(|&e| e <= now.saturating_sub(policy.clock_skew))
                .map(|_| Reject::Expired),
            self.nbf.filter(|&n| n > late).map(|_| Reject::NotYetValid),
            self.iat
                .filter(|&i| i > late)
                .map(|_| Reject::IssuedInFuture),
            self.exp
                .filter(|&e| e.saturating_sub(self.iat.unwrap_or(now)) > policy.max_lifetime)
                .map(|_| Reject::LifetimeExceeded),
        ]
    }
}

/// The token's audiences that are also in `expected`, in the token's order. Empty = mismatch.
pub fn audience_intersection(claims: &Claims, expected: &[String]) -> Result<Vec<String>, Reject> {
    let list: &[String] = match &claims.aud {
        Some(Audience::One(a)) => std::slice::from_ref(a),
        Some(Audience::Many(v)) => v,
        None => &[],
    };
    let mut out = Vec::new();
    for a in list {
        if expected.iter().any(|e| e == a) && !out.contains(a) {
            out.push(a.clone());
        }
    }
    if out.is_empty() {
        Err(Reject::AudienceMismatch)
    } else {
        Ok(out)
    }
}

/// Kubernetes service-account shape: `sub` = `system:serviceaccount:<ns>:<name>`, agreeing
/// with the `kubernetes.io` claim. Returns (namespace, name).
pub fn check_kubernetes_claims(claims: &Claims) -> Result<(&str, &str), Reject> {
    let sub = claims.sub.as_deref().ok_or(Reject::InvalidClaims)?;
    let (ns, name) = split_sa_username(sub).ok_or(Reject::InvalidClaims)?;
    let kube = claims.kube.as_ref().ok_or(Reject::InvalidClaims)?;
    let sa = kube.serviceaccount.as_ref().ok_or(Reject::InvalidClaims)?;
    if kube.namespace.as_deref() != Some(ns) || sa.name.as_deref() != Some(name) {
        return Err(Reject::InvalidClaims);
    }
    if sa.uid.as_deref().is_none_or(str::is_empty) {
        return Err(Reject::InvalidClaims);
    }
    Ok((ns, name))
}

/// Legacy Secret-based token claims. Returns (namespace, name).
pub fn check_legacy_claims(claims: &Claims) -> Result<(&str, &str), Reject> {
    let sub = claims.sub.as_deref().ok_or(Reject::InvalidClaims)?;
    let (ns, name) = split_sa_username(sub).ok_or(Reject::InvalidClaims)?;
    if claims.legacy_namespace.as_deref() != Some(ns)
        || claims.legacy_sa_name.as_deref() != Some(name)
        || claims.legacy_sa_uid.as_deref().is_none_or(str::is_empty)
        || claims
            .legacy_secret_name
            .as_deref()
            .is_none_or(str::is_empty)
    {
        return Err(Reject::InvalidClaims);
    }
    Ok((ns, name))
}

/// `system:serviceaccount:<ns>:<name>` → (ns, name), both non-empty and colon-free.
pub fn split_sa_username(sub: &str) -> Option<(&str, &str)> {
    let rest = sub.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    if ns.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((ns, name))
}

/// Pick the key and check the signature. With a `kid`, only that key is tried; without one,
/// every key of the algorithm's type. `Err(UnknownKey)` lets the caller try one refetch.
pub fn verify_signature<'k>(
    token: &ParsedToken<'_>,
    keys: &'k KeySet,
) -> Result<&'k VerifyingKey, Reject> {
    match &token.kid {
        Some(kid) => {
            let key = keys.by_kid(kid).ok_or(Reject::UnknownKey)?;
            if key.key_type != token.alg.key_type() || key.verifier(token.alg).is_none() {
                return Err(Reject::UnsupportedAlgorithm);
            }
            if key.verify(token.alg, token.signing_input, &token.signature) {
                Ok(key)
            } else {
                Err(Reject::BadSignature)
            }
        }
        None => {
            let mut candidates = keys
                .keys
                .iter()
                .filter(|k| k.verifier(token.alg).is_some())
                .peekable();
            if candidates.peek().is_none() {
                return Err(Reject::UnknownKey);
            }
            candidates
                .find(|k| k.verify(token.alg, token.signing_input, &token.signature))
                .map(|k| &**k)
                .ok_or(Reject::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    const POLICY: TimePolicy = TimePolicy {
        clock_skew: 60,
        max_lifetime: 3600,
    };

    #[test]
    fn shape_rules() {
        assert_eq!(parse("a.b", 9999).err(), Some(Reject::Malformed));
        assert_eq!(parse("a.b.c.d", 9999).err(), Some(Reject::Malformed));
        let good = token(r#"{"alg":"RS256"}"#, r#"{"iss":"x"}"#);
        assert!(parse(&good, 9999).is_ok());
        assert_eq!(parse(&good, 10).err(), Some(Reject::TooLarge));
        let padded = format!("{}=", good);
        assert_eq!(parse(&padded, 9999).err(), Some(Reject::Malformed));
        let not_json = format!("{}.{}.{}", b64("{alg"), b64("{}"), b64("s"));
        assert_eq!(parse(&not_json, 9999).err(), Some(Reject::Malformed));
        let payload_not_json = token(r#"{"alg":"RS256"}"#, "not json");
        assert_eq!(
            parse(&payload_not_json, 9999).err(),
            Some(Reject::Malformed)
        );
        let header_array = token(r#"["RS256","k1",null,null,null,null,null,null]"#, "{}");
        assert_eq!(parse(&header_array, 9999).err(), Some(Reject::Malformed));
        let claims_array = token(r#"{"alg":"RS256"}"#, r#"["x","system:serviceaccount:a:b"]"#);
        assert_eq!(parse(&claims_array, 9999).err(), Some(Reject::Malformed));
        let spaced = token(" \r\n{\"alg\":\"RS256\"}", "\t{}");
        assert!(parse(&spaced, 9999).is_ok());
    }

    #[test]
    fn audience_is_a_string_or_an_array_of_strings() {
        let aud = |json: &str| {
            let t = token(r#"{"alg":"RS256"}"#, &format!(r#"{{"aud":{json}}}"#));
            parse(&t, 9999).map(|p| match p.claims.aud {
                Some(Audience::One(a)) => vec![a],
                Some(Audience::Many(v)) => v,
                None => vec!["<none>".into()],
            })
        };
        assert_eq!(aud(r#""a""#), Ok(vec!["a".to_string()]));
        assert_eq!(aud(r#"["a","b"]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(aud("[]"), Ok(vec![]));
        assert_eq!(aud("null"), Ok(vec!["<none>".to_string()]));
        for bad in ["5", "[1]", r#"["a",null]"#, r#"{"a":1}"#, "true"] {
            assert_eq!(aud(bad).err(), Some(Reject::InvalidClaims), "{bad}");
        }
    }

    #[test]
    fn header_rules() {
        for alg in ["none", "HS256", "HS512", "RSA1_5", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(
                parse(&t, 9999).err(),
                Some(Reject::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        for h in [
            r#"{"alg":"RS256","crit":["exp"]}"#,
            r#"{"alg":"RS256","jku":"https://evil/jwks"}"#,
            r#"{"alg":"RS256","x5u":"https://evil/cert"}"#,
            r#"{"alg":"RS256","jwk":{"kty":"RSA"}}"#,
            r#"{"alg":"RS256","x5c":["MII"]}"#,
            r#"{"alg":"RS256","cty":"JWT"}"#,
            r#"{"alg":"RS256","cty":"application/jwt"}"#,
            r#"{"alg":"RS256","cty":"Application/JWT"}"#,
            r#"{"alg":"RS256","crit":null}"#,
            r#"{"alg":"RS256","jku":null}"#,
        ] {
            assert_eq!(
                parse(&token(h, "{}"), 9999).err(),
                Some(Reject::ForbiddenHeader),
                "{h}"
            );
        }
    }

    #[test]
    fn duplicate_and_mistyped_claims_are_invalid() {
        let dup = token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#);
        assert_eq!(parse(&dup, 9999).err(), Some(Reject::InvalidClaims));
        let mistyped = token(r#"{"alg":"RS256"}"#, r#"{"iss":42}"#);
        assert_eq!(parse(&mistyped, 9999).err(), Some(Reject::InvalidClaims));
    }

    #[test]
    fn time_rules() {
        let now = 1_000_000;
        let c = |s: &str| claims(s);
        assert_eq!(
            check_times(&c(r#"{"exp":1000100}"#), now, POLICY, true),
            Ok(Some(1_000_100))
        );
        assert_eq!(
            check_times(&c("{}"), now, POLICY, true),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(check_times(&c("{}"), now, POLICY, false), Ok(None));
        assert_eq!(
            check_times(&c(r#"{"exp":"soon"}"#), now, POLICY, true),
            Err(Reject::InvalidClaims)
        );
        // exp exactly at now - skew is expired; one second later is not.
        assert_eq!(
            check_times(&c(r#"{"exp":999940}"#), now, POLICY, true),
            Err(Reject::Expired)
        );
        assert!(check_times(&c(r#"{"exp":999941}"#), now, POLICY, true).is_ok());
        assert_eq!(
            check_times(&c(r#"{"exp":1000100,"nbf":1000061}"#), now, POLICY, true),
            Err(Reject::NotYetValid)
        );
        assert_eq!(
            check_times(&c(r#"{"exp":1000100,"iat":1000061}"#), now, POLICY, true),
            Err(Reject::IssuedInFuture)
        );
        assert_eq!(
            check_times(&c(r#"{"exp":1003700,"iat":1000000}"#), now, POLICY, true),
            Err(Reject::LifetimeExceeded)
        );
        assert_eq!(
            check_times(&c(r#"{"exp":1e300}"#), now, POLICY, true),
            Err(Reject::LifetimeExceeded)
        );
        assert!(check_times(&c(r#"{"exp":1003600,"iat":1000000}"#), now, POLICY, true).is_ok());
    }

    #[test]
    fn audiences() {
        let expected = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            audience_intersection(&claims(r#"{"aud":"b"}"#), &expected),
            Ok(vec!["b".to_string()])
        );
        assert_eq!(
            audience_intersection(&claims(r#"{"aud":["x","a","b"]}"#), &expected),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(
            audience_intersection(&claims(r#"{"aud":["x"]}"#), &expected),
            Err(Reject::AudienceMismatch)
        );
        assert_eq!(
            audience_intersection(&claims("{}"), &expected),
            Err(Reject::AudienceMismatch)
        );
    }

    #[test]
    fn kubernetes_claims_must_agree() {
        let ok = r#"{"sub":"system:serviceaccount:ns1:sa1","kubernetes.io":{"namespace":"ns1","serviceaccount":{"name":"sa1","uid":"u"}}}"#;
        assert_eq!(check_kubernetes_claims(&claims(ok)), Ok(("ns1", "sa1")));
        let other_ns = ok.replace(r#""namespace":"ns1""#, r#""namespace":"ns2""#);
        assert_eq!(
            check_kubernetes_claims(&claims(&other_ns)),
            Err(Reject::InvalidClaims)
        );
        let not_sa = ok.replace("system:serviceaccount:ns1:sa1", "alice");
        assert_eq!(
            check_kubernetes_claims(&claims(&not_sa)),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(
            check_kubernetes_claims(&claims(r#"{"sub":"system:serviceaccount:a:b"}"#)),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(split_sa_username("system:serviceaccount:a:b:c"), None);
        assert_eq!(split_sa_username("system:serviceaccount::b"), None);
    }

    #[test]
    fn reason_codes_are_the_spec_set() {
        let codes: Vec<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "malformed",
                "too_large",
                "unsupported_algorithm",
                "forbidden_header",
                "unknown_issuer",
                "unknown_key",
                "bad_signature",
                "expired",
                "not_yet_valid",
                "issued_in_future",
                "lifetime_exceeded",
                "audience_mismatch",
                "invalid_claims",
                "legacy_token",
                "invalidated"
            ]
        );
    }
}
