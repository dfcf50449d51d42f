//! The wire format of Envoy's `verify_signature` and `sign` foreign functions: protobuf messages
//! `VerifySignatureArguments { string hash_function = 1; bytes public_key = 2; bytes signature = 3;
//! bytes text = 4; }` and `VerifySignatureResult { bool result = 1; string error = 2; }`, encoded
//! by hand — two messages do not justify a protobuf runtime in the filter.

/// `SignArguments { string hash_function = 1; bytes private_key = 2 (PKCS#8 DER); bytes text = 3; }`.
pub fn sign_arguments(hash: &str, private_key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut args = Vec::with_capacity(private_key.len() + message.len() + 16);
    field(&mut args, 1, hash.as_bytes());
    field(&mut args, 2, private_key);
    field(&mut args, 3, message);
    args
}

/// `SignResult { bool result = 1; bytes signature = 2; string error = 3; }` → the signature.
pub fn sign_result(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut ok, mut signature, mut error) = (false, Vec::new(), String::new());
    while !bytes.is_empty() {
        let (tag, rest) = varint(bytes).ok_or("truncated sign result")?;
        let (value, rest) = varint(rest).ok_or("truncated sign result")?;
        bytes = match tag {
            0x08 => {
                ok = value != 0;
                rest
            }
            0x12 | 0x1a => {
                let len = usize::try_from(value).unwrap_or(usize::MAX);
                let data = rest.get(..len).ok_or("truncated field")?;
                if tag == 0x12 {
                    signature = data.to_vec();
                } else {
                    error = String::from_utf8_lossy(data).into_owned();
                }
                &rest[len..]
            }
            _ => return Err(format!("unexpected field tag {tag} in sign result")),
        };
    }
    match (ok, signature.is_empty()) {
        (true, false) => Ok(signature),
        _ => Err(if error.is_empty() { "signing failed".into() } else { error }),
    }
}

/// The request: SPKI DER public key, DER signature for ECDSA, the signed bytes.
pub fn verify_signature_arguments(hash: &str, public_key: &[u8], signature: &[u8], message: &[u8]) -> Vec<u8> {
    let mut args = Vec::with_capacity(public_key.len() + signature.len() + message.len() + 32);
    field(&mut args, 1, hash.as_bytes());
    field(&mut args, 2, public_key);
    field(&mut args, 3, signature);
    field(&mut args, 4, message);
    args
}

/// Reads the result; an absent `result` is false (proto3 default).
pub fn verify_signature_result(mut bytes: &[u8]) -> Result<bool, String> {
    let mut verified = false;
    // Keys are varints too: a field numbered 16 or more has a key of two bytes or more.
    while !bytes.is_empty() {
        let (tag, rest) = varint(bytes).ok_or("truncated verify_signature result")?;
        let (value, rest) = varint(rest).ok_or("truncated verify_signature result")?;
        bytes = match tag {
            0x08 => {
                verified = value != 0;
                rest
            }
            t if t & 7 == 2 => rest.get(usize::try_from(value).unwrap_or(usize::MAX)..).ok_or("truncated field")?,
            _ => return Err(format!("unexpected field tag {tag} in verify_signature result")),
        };
    }
    Ok(verified)
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Appends a length-delimited protobuf field (wire type 2).
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_length_delimited_fields_in_order() {
        let long = vec![7u8; 200];
        let args = verify_signature_arguments("sha256", &[1, 2], &long, b"m");
        assert_eq!(&args[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&args[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(&args[12..15], &[0x1a, 0xc8, 0x01], "200 is a two-byte varint");
        assert_eq!(&args[args.len() - 3..], &[0x22, 1, b'm']);
    }

    #[test]
    fn sign_messages_round_trip() {
        assert_eq!(&sign_arguments("sha256", &[9], b"m")[8..], &[0x12, 1, 9, 0x1a, 1, b'm']);
        assert_eq!(sign_result(&[0x08, 1, 0x12, 2, 0xaa, 0xbb]), Ok(vec![0xaa, 0xbb]));
        assert_eq!(sign_result(&[0x08, 0, 0x1a, 3, b'b', b'a', b'd']), Err("bad".into()));
        assert!(sign_result(&[]).is_err());
    }

    #[test]
    fn results_are_read_strictly() {
        assert_eq!(verify_signature_result(&[0x08, 0x01]), Ok(true));
        assert_eq!(verify_signature_result(&[0x08, 0x00, 0x12, 3, b'b', b'a', b'd']), Ok(false));
        assert_eq!(verify_signature_result(&[]), Ok(false));
        assert!(verify_signature_result(&[0x12, 9, b'x']).is_err(), "truncated");
        assert!(verify_signature_result(&[0x15, 0, 0, 0, 0]).is_err(), "unexpected wire type");
    }

    #[test]
    fn field_keys_are_varints() {
        // Found by the `foreign` fuzz target: a key read as one byte made a field numbered 16
        // or more end at the wrong place, so bytes inside it were read as `result`. Here
        // field 134 holds 9 bytes ending in `08 01`: not verified.
        let unknown = [0xb2, 0x08, 0x09, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x01];
        assert_eq!(verify_signature_result(&unknown), Ok(false));
        assert_eq!(verify_signature_result(&[&unknown[..], &[0x08, 0x01]].concat()), Ok(true));
        let signed = [&[0x08, 0x01, 0x12, 0x01, 0xaa][..], &unknown].concat();
        assert!(sign_result(&signed).is_err(), "SignResult has no field 134");
    }
}
