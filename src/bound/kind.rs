//! The kinds of object watched.

/// The kinds watched, in metric-label spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ServiceAccounts = 0,
    Pods = 1,
    Secrets = 2,
    Nodes = 3,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::ServiceAccounts,
        Kind::Pods,
        Kind::Secrets,
        Kind::Nodes,
    ];

    /// The resource name: the `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceAccounts => "serviceaccounts",
            Kind::Pods => "pods",
            Kind::Secrets => "secrets",
            Kind::Nodes => "nodes",
        }
    }

    /// For log lines: "pod default/web-0 not found".
    pub fn singular(self) -> &'static str {
        match self {
            Kind::ServiceAccounts => "service account",
            Kind::Pods => "pod",
            Kind::Secrets => "secret",
            Kind::Nodes => "node",
        }
    }
}
