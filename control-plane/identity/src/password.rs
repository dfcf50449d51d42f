//! Passwords: argon2id hashing (OWASP parameters), verification of argon2 and bcrypt hashes
//! imported from Kratos (re-hashed with argon2id on the next successful sign-in), the
//! password policy (length, similarity to the identifier, a list of the most common
//! passwords, optionally Have I Been Pwned), and the failure counter behind rate limiting.
//! Hashing is CPU-bound: callers run it on the blocking pool.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordMethod;

/// Longer inputs only cost hashing time; no real password is this long.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Imported hashes with costs above these are refused so an import cannot pin the CPU or
/// exhaust memory at every sign-in (Kratos bounds them too).
const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ARGON2_TIME: u32 = 10;
const MAX_BCRYPT_COST: u32 = 14;

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An argon2id PHC string for `password`.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&portcullis_model::crypto::random_bytes::<16>()).map_err(|e| e.to_string())?;
    hasher().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but stored with another algorithm or weaker parameters: store `hash()` anew.
    YesRehash,
}

/// Checks `password` against a stored PHC (`$argon2id$…`, `$argon2i$…`) or bcrypt
/// (`$2a$`/`$2b$`/`$2y$`) hash. Unknown formats and over-expensive parameters never verify.
pub fn verify(stored: &str, password: &str) -> Verified {
    if password.len() > MAX_PASSWORD_BYTES {
        return Verified::No;
    }
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        let cost: u32 = stored.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(u32::MAX);
        if cost > MAX_BCRYPT_COST {
            return Verified::No;
        }
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::YesRehash,
            _ => Verified::No,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified::No;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Verified::No;
    };
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB || params.t_cost() > MAX_ARGON2_TIME {
        return Verified::No;
    }
    if Argon2::default().verify_password(password.as_bytes(), &parsed).is_err() {
        return Verified::No;
    }
    let ours = hasher();
    let current = parsed.algorithm.as_str() == "argon2id"
        && params.m_cost() >= ours.params().m_cost()
        && params.t_cost() >= ours.params().t_cost();
    if current { Verified::Yes } else { Verified::YesRehash }
}

/// Whether `stored` is a hash format this server can verify (for admin imports).
/// Hashes whose cost exceeds the limits are refused here, at import, rather than accepted and
/// then never verifying.
pub fn is_supported_hash(stored: &str) -> bool {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        let cost: u32 = stored.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(u32::MAX);
        return stored.len() == 60 && cost <= MAX_BCRYPT_COST;
    }
    let Ok(h) = PasswordHash::new(stored) else { return false };
    h.algorithm.as_str().starts_with("argon2")
        && Params::try_from(&h).is_ok_and(|p| p.m_cost() <= MAX_ARGON2_MEMORY_KIB && p.t_cost() <= MAX_ARGON2_TIME)
}

/// Passwords seen most in breach corpora; refused outright whatever the length policy.
const COMMON: &[&str] = &[
    "123456",
    "password",
    "12345678",
    "qwerty",
    "123456789",
    "12345",
    "1234",
    "111111",
    "1234567",
    "dragon",
    "123123",
    "baseball",
    "abc123",
    "football",
    "monkey",
    "letmein",
    "696969",
    "shadow",
    "master",
    "666666",
    "qwertyuiop",
    "123321",
    "mustang",
    "1234567890",
    "michael",
    "654321",
    "superman",
    "1qaz2wsx",
    "7777777",
    "121212",
    "000000",
    "qazwsx",
    "123qwe",
    "killer",
    "trustno1",
    "jordan",
    "jennifer",
    "zxcvbnm",
    "asdfgh",
    "hunter",
    "buster",
    "soccer",
    "harley",
    "batman",
    "andrew",
    "tigger",
    "sunshine",
    "iloveyou",
    "2000",
    "charlie",
    "robert",
    "thomas",
    "hockey",
    "ranger",
    "daniel",
    "starwars",
    "klaster",
    "112233",
    "george",
    "computer",
    "michelle",
    "jessica",
    "pepper",
    "1111",
    "zxcvbn",
    "555555",
    "11111111",
    "131313",
    "freedom",
    "777777",
    "pass",
    "maggie",
    "159753",
    "aaaaaa",
    "ginger",
    "princess",
    "joshua",
    "cheese",
    "amanda",
    "summer",
    "love",
    "ashley",
    "nicole",
    "chelsea",
    "biteme",
    "matthew",
    "access",
    "yankees",
    "987654321",
    "dallas",
    "austin",
    "thunder",
    "taylor",
    "matrix",
    "password1",
    "password123",
    "welcome",
    "welcome1",
    "admin",
    "admin123",
    "qwerty123",
    "letmein1",
    "passw0rd",
    "p@ssw0rd",
    "changeme",
    "secret",
    "iloveyou1",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "qwe123",
    "abcd1234",
    "abcdefgh",
    "00000000",
    "88888888",
    "99999999",
];

/// The password policy for a new or changed password. `Err` carries Kratos's message id and a
/// text that tells the user what to do.
pub async fn check_policy(
    config: &PasswordMethod,
    identifier: &str,
    password: &str,
    http: &reqwest::Client,
) -> Result<(), (u32, String)> {
    let chars = password.chars().count();
    if chars < config.min_password_length {
        return Err((
            4_000_032,
            format!("The password must be at least {} characters long, but got {chars}.", config.min_password_length),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err((4_000_033, format!("The password must be at most {MAX_PASSWORD_BYTES} bytes long.")));
    }
    let lower = password.to_lowercase();
    let id = identifier.trim().to_lowercase();
    let local = id.split('@').next().unwrap_or("");
    if !id.is_empty() && (lower == id || (local.len() >= 4 && lower.contains(local))) {
        return Err((4_000_031, "The password can not be used because it is too similar to the identifier.".into()));
    }
    if COMMON.contains(&lower.as_str()) {
        return Err((4_000_034, "The password is one of the most common passwords; choose another.".into()));
    }
    if config.haveibeenpwned_enabled && pwned(http, password).await {
        return Err((4_000_034, "The password has been found in data breaches and must no longer be used.".into()));
    }
    Ok(())
}

/// Have I Been Pwned range query; a network failure does not block the user (as Kratos's
/// `ignore_network_errors: true` default).
async fn pwned(http: &reqwest::Client, password: &str) -> bool {
    use sha1_smol::Sha1;
    let digest = Sha1::from(password.as_bytes()).digest().to_string().to_uppercase();
    let (prefix, suffix) = digest.split_at(5);
    let url = format!("https://api.pwnedpasswords.com/range/{prefix}");
    let Ok(response) = http.get(&url).timeout(std::time::Duration::from_secs(3)).send().await else {
        return false;
    };
    let Ok(body) = response.text().await else {
        return false;
    };
    body.lines().any(|line| line.split(':').next().is_some_and(|s| s.trim().eq_ignore_ascii_case(suffix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(verify(&h, "correct horse battery staple"), Verified::Yes);
        assert_eq!(verify(&h, "wrong"), Verified::No);
    }

    #[test]
    fn imported_bcrypt_and_weak_argon2_verify_and_ask_for_a_rehash() {
        let b = bcrypt::hash("hunter2hunter2", 4).unwrap();
        assert!(is_supported_hash(&b));
        assert_eq!(verify(&b, "hunter2hunter2"), Verified::YesRehash);
        assert_eq!(verify(&b, "hunter3hunter3"), Verified::No);
        let weak = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(8, 1, 1, None).unwrap())
            .hash_password(b"s3cret-pass", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
            .unwrap()
            .to_string();
        assert_eq!(verify(&weak, "s3cret-pass"), Verified::YesRehash);
        assert!(!is_supported_hash("$md5$whatever"));
        assert_eq!(verify("plaintext", "plaintext"), Verified::No);
    }

    #[test]
    fn expensive_imports_never_verify() {
        let huge =
            "$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(verify(huge, "x"), Verified::No);
        assert!(!is_supported_hash(huge), "refused at import too");
        assert_eq!(verify("$2b$31$abcdefghijklmnopqrstuu0123456789012345678901234567890", "x"), Verified::No);
    }

    #[tokio::test]
    async fn policy_names_the_problem() {
        let c = PasswordMethod::default();
        let http = reqwest::Client::new();
        assert_eq!(check_policy(&c, "a@example.com", "short", &http).await.unwrap_err().0, 4_000_032);
        assert_eq!(check_policy(&c, "alice@example.com", "alice-rocks-2026", &http).await.unwrap_err().0, 4_000_031);
        assert_eq!(check_policy(&c, "a@example.com", "Password123", &http).await.unwrap_err().0, 4_000_034);
        assert!(check_policy(&c, "a@example.com", "violet-tractor-umbrella", &http).await.is_ok());
    }
}
