//! One-time codes: six random digits, e-mailed through the courier, kept only as an
//! HMAC-SHA256 keyed by the server (so a stolen database does not reveal live codes, and
//! 10^6 guesses offline are useless without the key), single use, expiring, and with a
//! bounded number of wrong tries (counted before a guess is compared) and resends per flow.

use std::sync::OnceLock;

use portcullis_model::crypto;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::context::Identities;
use crate::courier::NewMessage;
use crate::flow::{CodeState, Flow, FlowError, Kind};

/// Codes one flow may send; more means someone is using the form to spam an inbox.
const MAX_SENDS: u32 = 5;

/// A uniformly random six-digit code.
pub fn generate() -> String {
    loop {
        let n = u32::from_le_bytes(crypto::random_bytes::<4>());
        // Rejection sampling: 4_294_000_000 is the largest multiple of 10^6 below 2^32.
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The key codes are kept under, from the first `secrets.system` entry.
pub(crate) fn key(system_secret: Option<&str>) -> [u8; 32] {
    static EPHEMERAL: OnceLock<[u8; 32]> = OnceLock::new();
    match system_secret {
        Some(secret) => crypto::sha256(format!("portcullis one-time codes\0{secret}").as_bytes()),
        // Without secrets.system codes are valid only until this process restarts.
        None => *EPHEMERAL.get_or_init(crypto::random_bytes::<32>),
    }
}

fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner: [u8; 32] = Sha256::new().chain_update(ipad).chain_update(message).finalize().into();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().into()
}

pub fn hash(state: &Identities, flow_id: &str, code: &str) -> String {
    crypto::hex(&hmac(&state.config.code_key, format!("{flow_id}:{code}").as_bytes()))
}

/// Sends a fresh code for `flow` to `address` (nothing is sent when `identity_id` is `None`
/// for login and recovery: the answer must not reveal whether an account exists).
pub async fn send(
    state: &Identities,
    flow: &mut Flow,
    address: &str,
    identity_id: Option<String>,
    deliver: bool,
) -> Result<(), FlowError> {
    let previous = flow.code.as_ref().map_or(0, |c| c.sent);
    if previous >= MAX_SENDS {
        return Err(FlowError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "self_service_flow_rate_limited",
            "This flow has sent the maximum number of codes; start again.",
        ));
    }
    let now = state.clock.now();
    let lifespan = i64::try_from(state.config.selfservice.methods.code.lifespan.as_secs()).unwrap_or(900);
    let code = generate();
    flow.code = Some(CodeState {
        address: address.to_owned(),
        hash: hash(state, &flow.id, &code),
        expires_at: now + lifespan,
        attempts: 0,
        sent: previous + 1,
        identity_id,
        used: false,
    });
    if deliver {
        let (subject, template_type, what) = match flow.kind {
            Kind::Login => ("Your sign-in code", "login_code_valid", "sign in"),
            Kind::Registration => {
                ("Complete your account registration", "registration_code_valid", "finish signing up")
            }
            Kind::Recovery => ("Recover access to your account", "recovery_code_valid", "recover your account"),
            Kind::Verification | Kind::Settings => {
                ("Please verify your email address", "verification_code_valid", "verify this address")
            }
        };
        let minutes = lifespan / 60;
        let body = format!(
            "Hi,\n\nuse this code to {what}:\n\n{code}\n\nIt expires in {minutes} minutes and works once. If you did not ask \
             for it, ignore this message.\n"
        );
        state
            .courier
            .enqueue(
                &state.store,
                now,
                NewMessage {
                    recipient: address.to_owned(),
                    subject: subject.to_owned(),
                    body,
                    template_type: template_type.to_owned(),
                    secret: Some(code),
                },
            )
            .await?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Correct: the identity it was sent for (if any account existed).
    Valid(Option<String>),
    Invalid,
    /// Expired, used, or too many wrong tries: a new code is needed.
    Spent,
}

/// Checks `code`. The attempt is stored before the code is compared (compare-and-swap on the
/// flow's version: of the requests racing on one flow, one compares and the others get 409),
/// so no more than `max_submissions` guesses are ever compared per code, and a code that
/// matches is stored as used before the caller acts on it.
pub async fn check(state: &Identities, flow: &mut Flow, code: &str) -> Result<Check, FlowError> {
    let max = state.config.selfservice.methods.code.max_submissions;
    let now = state.clock.now();
    let expected = hash(state, &flow.id, code.trim());
    let Some(c) = flow.code.as_mut() else {
        return Ok(Check::Spent);
    };
    if c.used || c.expires_at <= now || c.attempts >= max {
        return Ok(Check::Spent);
    }
    c.attempts += 1;
    crate::flow::save(&state.store, flow).await?;
    let Some(c) = flow.code.as_mut() else {
        return Ok(Check::Spent);
    };
    if !crypto::secret_eq(&expected, &c.hash) {
        return Ok(Check::Invalid);
    }
    c.used = true;
    let found = match &c.identity_id {
        Some(id) => Check::Valid(Some(id.clone())),
        None if flow.kind == Kind::Registration || flow.kind == Kind::Verification => Check::Valid(None),
        None => Check::Invalid,
    };
    crate::flow::save(&state.store, flow).await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: Vec<String> = (0..50).map(|_| generate()).collect();
        assert!(codes.iter().all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert!(distinct.len() > 40);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours is always 32 bytes, padded the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            crypto::hex(&hmac(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
