//! Target `foreign`: the hand-written protobuf of Envoy's `verify_signature` and `sign` foreign
//! functions in the filter — the results decoded from arbitrary bytes, and the arguments
//! encoded from values taken from the input.
//! Asserts: decoding never panics; when the filter reads a result, a protobuf decoder written
//! from the encoding spec reads it the same way (`result`, `signature`); a result encoded by
//! that decoder's encoder, with unknown fields mixed in, decodes to its value; the arguments
//! decode field by field to exactly what went in.

use arbitrary::{Result, Unstructured};
use portcullis_filter::foreign::{sign_arguments, sign_result, verify_signature_arguments, verify_signature_result};

pub fn run(data: &[u8]) {
    let verified = verify_signature_result(data);
    if let (Ok(v), Some(fields)) = (verified, decode(data)) {
        assert_eq!(v, last_varint(&fields, 1).is_some_and(|x| x != 0), "result of {data:02x?}");
    }
    if let (Ok(signature), Some(fields)) = (sign_result(data), decode(data)) {
        assert!(last_varint(&fields, 1).is_some_and(|x| x != 0), "signed without result=true: {data:02x?}");
        assert_eq!(Some(signature.as_slice()), last_bytes(&fields, 2), "signature of {data:02x?}");
    }
    let _ = round_trips(&mut Unstructured::new(data));
}

fn round_trips(u: &mut Unstructured<'_>) -> Result<()> {
    let result: bool = u.arbitrary()?;
    let mut message = Vec::new();
    let unknown: Vec<(u32, Vec<u8>)> = u.arbitrary()?;
    for (number, bytes) in &unknown {
        // Field 1 is `result`; every other field is skipped by a reader that does not know it
        // (numbers from 16 up have keys of two bytes or more).
        let number = 2 + number % 100_000;
        put_varint(&mut message, u64::from(number) << 3 | 2);
        put_varint(&mut message, bytes.len() as u64);
        message.extend_from_slice(bytes);
    }
    if result {
        message.extend_from_slice(&[0x08, 0x01]);
    }
    assert_eq!(verify_signature_result(&message), Ok(result), "{message:02x?}");

    let hash: &str = u.arbitrary()?;
    let (key, signature, text): (&[u8], &[u8], &[u8]) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
    let fields = decode(&verify_signature_arguments(hash, key, signature, text))
        .unwrap_or_else(|| panic!("verify_signature arguments are not protobuf"));
    let expected = [hash.as_bytes(), key, signature, text];
    assert_eq!(fields.len(), 4);
    for (i, (number, value)) in fields.iter().enumerate() {
        assert_eq!((*number, value), (i as u64 + 1, &Value::Bytes(expected[i].to_vec())));
    }
    let fields = decode(&sign_arguments(hash, key, text)).unwrap_or_else(|| panic!("sign arguments are not protobuf"));
    let expected = [hash.as_bytes(), key, text];
    assert_eq!(fields.len(), 3);
    for (i, (number, value)) in fields.iter().enumerate() {
        assert_eq!((*number, value), (i as u64 + 1, &Value::Bytes(expected[i].to_vec())));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Value {
    Varint(u64),
    Fixed,
    Bytes(Vec<u8>),
}

/// A protobuf decoder from the wire-format spec: varint keys, wire types 0, 1, 2 and 5.
fn decode(mut bytes: &[u8]) -> Option<Vec<(u64, Value)>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key;
        (key, bytes) = varint(bytes)?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let value = match key & 7 {
            0 => {
                let v;
                (v, bytes) = varint(bytes)?;
                Value::Varint(v)
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                bytes = bytes.get(n..)?;
                Value::Fixed
            }
            2 => {
                let len;
                (len, bytes) = varint(bytes)?;
                let len = usize::try_from(len).ok()?;
                let v = bytes.get(..len)?.to_vec();
                bytes = &bytes[len..];
                Value::Bytes(v)
            }
            _ => return None,
        };
        fields.push((number, value));
    }
    Some(fields)
}

/// A base-128 varint, least significant group first, at most ten bytes; read from its last
/// byte back (the filter reads it front to back, so a shared slip would not cancel out).
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().take(10).position(|b| b & 0x80 == 0)?;
    let value = bytes[..=end].iter().rev().fold(0u64, |acc, b| acc << 7 | u64::from(b & 0x7f));
    Some((value, &bytes[end + 1..]))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn last_varint(fields: &[(u64, Value)], number: u64) -> Option<u64> {
    fields.iter().rev().find_map(|(n, v)| match v {
        Value::Varint(x) if *n == number => Some(*x),
        _ => None,
    })
}

fn last_bytes(fields: &[(u64, Value)], number: u64) -> Option<&[u8]> {
    fields.iter().rev().find_map(|(n, v)| match v {
        Value::Bytes(x) if *n == number => Some(x.as_slice()),
        _ => None,
    })
}
