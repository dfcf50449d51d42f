//! The parameters of an OAuth2 request (form or query pairs, in order and with repeats), as
//! the domain reads them. The HTTP edge decodes the body; this module must not.

use crate::OAuth2Error;

/// Request parameters: `(name, value)` pairs as sent, borrowed from the decoded request.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a>(pub &'a [(String, String)]);

impl<'a> Params<'a> {
    /// The single value of `name`; a repeated parameter is a malformed request (RFC 6749 §3.1).
    pub fn single(&self, name: &str) -> Result<Option<&'a str>, OAuth2Error> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuth2Error::invalid_request(portcullis_model::form::Repeated(name.to_owned()).to_string()));
        }
        Ok(first)
    }

    pub fn all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
