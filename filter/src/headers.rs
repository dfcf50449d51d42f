//! The request's header map as Envoy hands it over (`proxy_get_header_map_pairs`): one buffer
//! in proxy-wasm's layout — the number of pairs, then each name's and value's length (u32,
//! little-endian), then each name and value followed by a NUL. It is read once per request and
//! copied into one string the pipeline borrows from, instead of two strings per header.
//!
//! HTTP lets a value carry bytes that are not UTF-8 (obs-text, e.g. Latin-1). No string can
//! stand for such bytes without colliding with a real UTF-8 value, so the filter could only
//! judge a value other than the one the upstream reads: the request is refused with a clear
//! error instead. (The SDK's own reader panics on them, which takes the VM down.)

use std::ops::Range;

/// Why a header block cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The buffer does not follow the layout (a host bug; the request is refused).
    Malformed,
    /// This header's value (or name) is not UTF-8.
    NotUtf8 { name: String },
}

/// The header pairs, names and values in one string.
#[derive(Debug, Default)]
pub struct HeaderBlock {
    text: String,
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderBlock {
    /// Reads a serialised header map (an empty buffer is an empty map).
    pub fn parse(raw: &[u8]) -> Result<Self, HeaderError> {
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let word = |at: usize| -> Result<usize, HeaderError> {
            let bytes = raw.get(at..at + 4).ok_or(HeaderError::Malformed)?;
            let mut word = [0u8; 4];
            word.copy_from_slice(bytes);
            usize::try_from(u32::from_le_bytes(word)).map_err(|_| HeaderError::Malformed)
        };
        let count = word(0)?;
        let mut at = count.checked_mul(8).and_then(|n| n.checked_add(4)).ok_or(HeaderError::Malformed)?;
        let mut block = Self { text: String::with_capacity(raw.len().saturating_sub(at)), pairs: Vec::new() };
        block.pairs.reserve(count.min(raw.len() / 10));
        for i in 0..count {
            let (name_len, value_len) = (word(4 + i * 8)?, word(8 + i * 8)?);
            let name = raw.get(at..at + name_len).ok_or(HeaderError::Malformed)?;
            at += name_len + 1;
            let value = raw.get(at..at + value_len).ok_or(HeaderError::Malformed)?;
            at += value_len + 1;
            let not_utf8 = || HeaderError::NotUtf8 { name: String::from_utf8_lossy(name).into_owned() };
            let name = std::str::from_utf8(name).map_err(|_| not_utf8())?;
            let value = std::str::from_utf8(value).map_err(|_| not_utf8())?;
            let start = block.text.len();
            block.text.push_str(name);
            block.text.push_str(value);
            let middle = start + name.len();
            block.pairs.push((start..middle, middle..block.text.len()));
        }
        if at > raw.len() {
            return Err(HeaderError::Malformed);
        }
        Ok(block)
    }

    /// The pairs in the order Envoy holds them.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.pairs.len()).filter_map(|i| self.get(i))
    }

    /// The `i`th pair.
    pub fn get(&self, i: usize) -> Option<(&str, &str)> {
        let (name, value) = self.pairs.get(i)?;
        Some((self.text.get(name.clone())?, self.text.get(value.clone())?))
    }

    /// Serialises pairs in the host's layout (what a host, or a test's mock of one, hands over).
    pub fn serialize<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
        let pairs: Vec<_> = pairs.into_iter().collect();
        let mut out = Vec::new();
        let word = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        out.extend_from_slice(&word(pairs.len()));
        for (name, value) in &pairs {
            out.extend_from_slice(&word(name.len()));
            out.extend_from_slice(&word(value.len()));
        }
        for (name, value) in &pairs {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_host_serialises_in_order_with_repeats_and_empty_values() {
        let pairs: [(&str, &[u8]); 4] =
            [(":path", b"/a?b=1"), ("x-user", b"root"), ("x-user", b""), ("cookie", "a=caf\u{e9}".as_bytes())];
        let block = HeaderBlock::parse(&HeaderBlock::serialize(pairs)).unwrap();
        let read: Vec<_> = block.pairs().collect();
        assert_eq!(read, [(":path", "/a?b=1"), ("x-user", "root"), ("x-user", ""), ("cookie", "a=café")]);
        assert_eq!(HeaderBlock::parse(&[]).unwrap().pairs().count(), 0);
    }

    #[test]
    fn a_value_that_is_not_utf8_names_its_header() {
        let raw = HeaderBlock::serialize([(":path", &b"/"[..]), ("x-name", b"caf\xe9")]);
        assert_eq!(HeaderBlock::parse(&raw).unwrap_err(), HeaderError::NotUtf8 { name: "x-name".into() });
    }

    #[test]
    fn a_buffer_that_lies_about_its_lengths_is_refused_not_read_past() {
        let raw = HeaderBlock::serialize([("a", &b"b"[..])]);
        for cut in 0..raw.len() {
            assert!(HeaderBlock::parse(&raw[..cut]).is_err() || cut == 0, "cut at {cut}");
        }
        let mut huge = raw.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderBlock::parse(&huge).unwrap_err(), HeaderError::Malformed);
        let mut long_name = raw;
        long_name[4..8].copy_from_slice(&1_000u32.to_le_bytes());
        assert_eq!(HeaderBlock::parse(&long_name).unwrap_err(), HeaderError::Malformed);
    }
}
