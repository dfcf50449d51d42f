//! The `secrets` config section (Hydra's): what encrypts signing keys at rest. Validated at
//! start-up; values never appear in `Debug` or an error.

use portcullis_model::StartupError;
use serde::Deserialize;

/// Secrets the server keeps (Hydra's `secrets` section).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Secrets {
    /// Encrypts signing keys at rest (AES-256-GCM with the SHA-256 of the secret). The first
    /// entry encrypts; every entry is tried to decrypt, so a secret is rotated by prepending
    /// the new one. Empty: signing keys are never stored and live only in memory.
    pub system: Vec<String>,
}

/// Shorter secrets are guessable offline from a stolen database; Hydra refuses them too.
pub const MIN_SYSTEM_SECRET_CHARS: usize = 16;

impl Secrets {
    /// Refuses a short secret, naming its position but never its value.
    pub fn validate(&self) -> Result<(), StartupError> {
        for (i, secret) in self.system.iter().enumerate() {
            if secret.chars().count() < MIN_SYSTEM_SECRET_CHARS {
                return Err(StartupError(format!(
                    "config key secrets.system[{i}]: must be at least {MIN_SYSTEM_SECRET_CHARS} characters long"
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets {{ system: <{} redacted> }}", self.system.len())
    }
}
