//! kube-apiserver's service-account token validator, over the index. Learned from Kubernetes
//! 1.34 `pkg/serviceaccount/claims.go` (`validator.Validate`: the service account, then the
//! secret, the pod, and the node of a node-bound token; uid and a `deletionTimestamp` more
//! than `jwt.DefaultLeeway` (60 s) in the past) and `pkg/serviceaccount/legacy.go`
//! (`legacyValidator.Validate`: the secret, then the service account, any
//! `deletionTimestamp` at all, then the `kubernetes.io/legacy-token-invalid-since` label).
//! legacy.go also compares the secret's `token` data with the token: secret data is never
//! read here, so that one check is not made.

use std::fmt;

use super::index::{ObjectState, Uid};
use super::kind::Kind;
use crate::verify::Claims;

/// kube-apiserver's `jwt.DefaultLeeway`: an object deleted less than this long ago still
/// validates (its deletion may be graceful).
pub const LEEWAY_MS: i64 = 60_000;

/// What a token is bound to: names and uids as the token states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub namespace: String,
    /// (name, uid)
    pub service_account: (String, String),
    pub pod: Option<(String, String)>,
    pub secret: Option<(String, String)>,
    /// Checked only when there is no pod (a node-bound token), as kube-apiserver does.
    pub node: Option<(String, String)>,
    /// A Secret-based token: legacy.go's rules (the secret's uid is not in the token).
    pub legacy: bool,
}

/// Why a token no longer holds: which object, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidated {
    pub kind: Kind,
    /// `namespace/name` (nodes: `name`).
    pub object: String,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    NotFound,
    UidDiffers,
    /// Deleted at this Unix time (seconds).
    Deleted(u32),
    /// A legacy token's secret carries `kubernetes.io/legacy-token-invalid-since`.
    MarkedInvalid,
}

impl fmt::Display for Invalidated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.kind.singular(), self.object)?;
        match self.why {
            Why::NotFound => f.write_str("not found"),
            Why::UidDiffers => f.write_str("has another uid (deleted and recreated)"),
            Why::Deleted(at) => {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(at));
                write!(f, "deleted at {}", humantime::format_rfc3339_seconds(t))
            }
            Why::MarkedInvalid => {
                f.write_str("is labelled kubernetes.io/legacy-token-invalid-since")
            }
        }
    }
}

fn pair(name: Option<&String>, uid: Option<&String>) -> (String, String) {
    (
        name.cloned().unwrap_or_default(),
        uid.cloned().unwrap_or_default(),
    )
}

impl Binding {
    /// From a token's checked claims (`legacy`: a Secret-based token).
    pub fn from_claims(claims: &Claims, legacy: bool) -> Binding {
        if legacy {
            return Binding {
                namespace: claims.legacy_namespace.clone().unwrap_or_default(),
                service_account: pair(
                    claims.legacy_sa_name.as_ref(),
                    claims.legacy_sa_uid.as_ref(),
                ),
                pod: None,
                secret: Some((
                    claims.legacy_secret_name.clone().unwrap_or_default(),
                    String::new(),
                )),
                node: None,
                legacy: true,
            };
        }
        let kube = claims.kube.as_ref();
        let r =
            |x: Option<&crate::verify::NameUid>| x.map(|x| pair(x.name.as_ref(), x.uid.as_ref()));
        Binding {
            namespace: kube.and_then(|k| k.namespace.clone()).unwrap_or_default(),
            service_account: r(kube.and_then(|k| k.serviceaccount.as_ref())).unwrap_or_default(),
            pod: r(kube.and_then(|k| k.pod.as_ref())),
            secret: r(kube.and_then(|k| k.secret.as_ref())),
            node: r(kube.and_then(|k| k.node.as_ref())),
            legacy: false,
        }
    }

    /// Every object the token names, in check order (for `inspect`, which fetches them).
    pub fn objects(&self) -> Vec<(Kind, &str, &str)> {
        let ns = self.namespace.as_str();
        let mut v = Vec::new();
        fn one<'a>(kind: Kind, ns: &'a str, r: &'a (String, String)) -> (Kind, &'a str, &'a str) {
            (kind, ns, r.0.as_str())
        }
        let one = |kind, r| one(kind, ns, r);
        if self.legacy {
            v.extend(self.secret.iter().map(|s| one(Kind::Secrets, s)));
            v.push(one(Kind::ServiceAccounts, &self.service_account));
            return v;
        }
        v.push(one(Kind::ServiceAccounts, &self.service_account));
        v.extend(self.secret.iter().map(|s| one(Kind::Secrets, s)));
        v.extend(self.pod.iter().map(|p| one(Kind::Pods, p)));
        if self.pod.is_none() {
            v.extend(self.node.iter().map(|n| one(Kind::Nodes, n)));
        }
        v
    }

    /// The checks, in kube-apiserver's order; the first failure. `lookup(kind, ns, name)`.
    pub fn check(
        &self,
        now_ms: i64,
        lookup: impl Fn(Kind, &str, &str) -> Option<ObjectState>,
    ) -> Result<(), Invalidated> {
        let ns = self.namespace.as_str();
        let invalid = |kind: Kind, name: &str, why| Invalidated {
            kind,
            object: if kind == Kind::Nodes {
                name.to_string()
            } else {
                format!("{ns}/{name}")
            },
            why,
        };
        // Bound tokens: deleted more than the leeway ago. Legacy tokens: deleted at all.
        let gone = |o: &ObjectState| {
            o.deleted_at != 0
                && (self.legacy || i64::from(o.deleted_at) * 1000 < now_ms - LEEWAY_MS)
        };
        let one = |kind: Kind, (name, uid): &(String, String), check_uid: bool| {
            let Some(o) = lookup(kind, ns, name) else {
                return Err(invalid(kind, name, Why::NotFound));
            };
            if check_uid && o.uid != Uid::of(uid) {
                return Err(invalid(kind, name, Why::UidDiffers));
            }
            if gone(&o) {
                return Err(invalid(kind, name, Why::Deleted(o.deleted_at)));
            }
            Ok(o)
        };
        if self.legacy {
            let secret = match &self.secret {
                Some(s) => Some((one(Kind::Secrets, s, false)?, s)),
                None => None,
            };
            one(Kind::ServiceAccounts, &self.service_account, true)?;
            if let Some((o, (name, _))) = secret {
                if o.legacy_invalid {
                    return Err(invalid(Kind::Secrets, name, Why::MarkedInvalid));
                }
            }
            return Ok(());
        }
        one(Kind::ServiceAccounts, &self.service_account, true)?;
        if let Some(s) = &self.secret {
            one(Kind::Secrets, s, true)?;
        }
        match (&self.pod, &self.node) {
            (Some(p), _) => one(Kind::Pods, p, true).map(drop),
            (None, Some(n)) => one(Kind::Nodes, n, true).map(drop),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    fn state(uid: &str, deleted_at: u32, legacy_invalid: bool) -> ObjectState {
        ObjectState {
            uid: Uid::of(uid),
            deleted_at,
            legacy_invalid,
        }
    }

    fn run(b: &Binding, objects: &[(Kind, &str, ObjectState)]) -> Result<(), Invalidated> {
        let map: HashMap<(usize, String), ObjectState> = objects
            .iter()
            .map(|(k, n, s)| ((*k as usize, n.to_string()), *s))
            .collect();
        b.check(NOW, |kind, ns, name| {
            let key = if kind == Kind::Nodes {
                name.to_string()
            } else {
                format!("{ns}/{name}")
            };
            map.get(&(kind as usize, key)).copied()
        })
    }

    fn pod_token() -> Binding {
        Binding::from_claims(
            &claims(
                r#"{"sub":"system:serviceaccount:ns:sa","kubernetes.io":{"namespace":"ns",
                "serviceaccount":{"name":"sa","uid":"sa-1"},"pod":{"name":"p","uid":"pod-1"},
                "node":{"name":"n","uid":"node-1"}}}"#,
            ),
            false,
        )
    }

    #[test]
    fn pod_bound_tokens_follow_claims_go() {
        let b = pod_token();
        let sa = (Kind::ServiceAccounts, "ns/sa", state("sa-1", 0, false));
        let pod = (Kind::Pods, "ns/p", state("pod-1", 0, false));
        assert_eq!(
            run(&b, &[sa, pod]),
            Ok(()),
            "the node is not checked: a pod is"
        );
        let e = run(&b, &[sa]).unwrap_err();
        assert_eq!((e.kind, e.why), (Kind::Pods, Why::NotFound));
        assert_eq!(e.to_string(), "pod ns/p not found");
        let recreated = (Kind::Pods, "ns/p", state("pod-2", 0, false));
        assert_eq!(run(&b, &[sa, recreated]).unwrap_err().why, Why::UidDiffers);
        let secs = (NOW / 1000) as u32;
        let recent = (Kind::Pods, "ns/p", state("pod-1", secs - 59, false));
        assert_eq!(run(&b, &[sa, recent]), Ok(()), "within the 60 s leeway");
        let old = (Kind::Pods, "ns/p", state("pod-1", secs - 61, false));
        let e = run(&b, &[sa, old]).unwrap_err();
        assert_eq!(e.why, Why::Deleted(secs - 61));
        assert!(
            e.to_string().starts_with("pod ns/p deleted at 2027-"),
            "{e}"
        );
        let sa_gone = (Kind::ServiceAccounts, "ns/sa", state("sa-2", 0, false));
        let e = run(&b, &[sa_gone, pod]).unwrap_err();
        assert_eq!((e.kind, e.why), (Kind::ServiceAccounts, Why::UidDiffers));
    }

    #[test]
    fn node_bound_and_secret_bound_tokens() {
        let node_only = Binding {
            pod: None,
            ..pod_token()
        };
        let sa = (Kind::ServiceAccounts, "ns/sa", state("sa-1", 0, false));
        let node = (Kind::Nodes, "n", state("node-1", 0, false));
        assert_eq!(run(&node_only, &[sa, node]), Ok(()));
        let e = run(&node_only, &[sa]).unwrap_err();
        assert_eq!((e.kind, e.object.as_str()), (Kind::Nodes, "n"));
        let secret_bound = Binding::from_claims(
            &claims(
                r#"{"kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa","uid":"sa-1"},
                "secret":{"name":"s","uid":"s-1"}}}"#,
            ),
            false,
        );
        let secret = (Kind::Secrets, "ns/s", state("s-1", 0, false));
        assert_eq!(run(&secret_bound, &[sa, secret]), Ok(()));
        assert_eq!(run(&secret_bound, &[sa]).unwrap_err().kind, Kind::Secrets);
    }

    #[test]
    fn legacy_tokens_follow_legacy_go() {
        let b = Binding::from_claims(
            &claims(
                r#"{"sub":"system:serviceaccount:ns:sa","kubernetes.io/serviceaccount/namespace":"ns",
                "kubernetes.io/serviceaccount/service-account.name":"sa",
                "kubernetes.io/serviceaccount/service-account.uid":"sa-1",
                "kubernetes.io/serviceaccount/secret.name":"sa-token"}"#,
            ),
            true,
        );
        let sa = (Kind::ServiceAccounts, "ns/sa", state("sa-1", 0, false));
        let secret = (Kind::Secrets, "ns/sa-token", state("any-uid", 0, false));
        assert_eq!(run(&b, &[sa, secret]), Ok(()));
        assert_eq!(run(&b, &[sa]).unwrap_err().kind, Kind::Secrets);
        let secs = (NOW / 1000) as u32;
        let deleting = (Kind::Secrets, "ns/sa-token", state("any-uid", secs, false));
        assert_eq!(
            run(&b, &[sa, deleting]).unwrap_err().why,
            Why::Deleted(secs),
            "no leeway for legacy tokens"
        );
        let marked = (Kind::Secrets, "ns/sa-token", state("any-uid", 0, true));
        assert_eq!(run(&b, &[sa, marked]).unwrap_err().why, Why::MarkedInvalid);
        let other_sa = (Kind::ServiceAccounts, "ns/sa", state("sa-2", 0, false));
        assert_eq!(
            run(&b, &[other_sa, secret]).unwrap_err().why,
            Why::UidDiffers
        );
    }
}
