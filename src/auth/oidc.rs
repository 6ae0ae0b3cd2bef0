//! An OIDC token's identity: its issuer's claim mappings and rules (SPEC section 13,
//! `claim_rules`), run once the signature holds, on a cache miss only.

use std::sync::Arc;

use super::issuers::TrustedIssuer;
use crate::identity::{self, Identity, TokenIds};
use crate::verify::Reject;

/// The identity the issuer's rules map the payload to. `Err`: the message of the failed
/// mapping or rule (`invalid_claims`), also logged at info with the token's fingerprint.
pub(super) fn identity(
    issuer: &TrustedIssuer,
    token: &str,
    payload: &[u8],
    ids: &TokenIds,
) -> Result<Identity, Arc<String>> {
    let mapped = match &issuer.cfg().claim_rules {
        Some(rules) => rules
            .apply(payload, ids.credential_id().as_deref())
            .map_err(|f| f.message),
        None => Err("the issuer has no claim mappings".to_string()),
    };
    let result = mapped.and_then(|m| identity::oidc_identity(m).map_err(str::to_string));
    result.map_err(|message| {
        tracing::info!(
            issuer = issuer.name(),
            token_fingerprint = %crate::token::fingerprint(token),
            reason = Reject::InvalidClaims.as_str(),
            message = %message,
            "token refused by the issuer's claim rules"
        );
        Arc::new(message)
    })
}
