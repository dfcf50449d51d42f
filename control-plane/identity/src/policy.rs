//! The registration policy: which e-mail addresses may register and sign in, enforced the
//! same way for every method (password, code, passkey) and for admin-created identities only
//! when the caller asks. Kratos leaves this to a web hook or a schema `pattern` that leaks
//! its regex into the error; here it is configuration with a readable message.

use crate::config::RegistrationPolicy;

pub use portcullis_model::identity::REGISTRATION_POLICY_MESSAGE_ID as MESSAGE_ID;

impl RegistrationPolicy {
    pub fn is_open(&self) -> bool {
        self.allowed_email_domains.is_empty() && self.allowed_emails.is_empty()
    }

    /// `Err(message)` when `email` may not register or sign in.
    pub fn check(&self, email: &str) -> Result<(), String> {
        if self.is_open() {
            return Ok(());
        }
        let email = email.trim().to_lowercase();
        if self.allowed_emails.iter().any(|a| a.trim().eq_ignore_ascii_case(&email)) {
            return Ok(());
        }
        let Some((_, domain)) = email.rsplit_once('@') else {
            return Err("Enter an e-mail address.".into());
        };
        let allowed = self.allowed_email_domains.iter().any(|d| {
            let d = d.trim().to_lowercase();
            match d.strip_prefix("*.") {
                Some(parent) => domain.ends_with(&format!(".{parent}")),
                None => domain == d,
            }
        });
        if allowed {
            return Ok(());
        }
        Err(match self.allowed_email_domains.as_slice() {
            [] => "This e-mail address is not invited to this service.".into(),
            [one] => format!("Only e-mail addresses at {one} can be used here."),
            many => format!("Only e-mail addresses at {} can be used here.", many.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(domains: &[&str], emails: &[&str]) -> RegistrationPolicy {
        RegistrationPolicy {
            allowed_email_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_emails: emails.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn open_when_unconfigured() {
        assert!(policy(&[], &[]).check("anyone@anywhere.org").is_ok());
    }

    #[test]
    fn domains_subdomains_and_invites() {
        let p = policy(&["example.com", "*.corp.example"], &["Guest@Partner.org"]);
        assert!(p.check("Alice@EXAMPLE.com").is_ok());
        assert!(p.check("bob@eu.corp.example").is_ok());
        assert!(p.check("guest@partner.org").is_ok());
        let err = p.check("mallory@example.com.evil.io").unwrap_err();
        assert!(err.contains("example.com") && err.contains("*.corp.example"), "{err}");
        assert!(p.check("x@corp.example").is_err(), "*.corp.example means subdomains only");
        assert!(p.check("no-at-sign").is_err());
    }
}
