//! Target `duration`: Go-style durations (`500ms`, `1h30m`) as rule configs write TTLs.
//! Asserts: no panic, no overflow; an accepted duration is made of digits and the units
//! `h`, `m`, `s`, `ms` only; the value reads back the same written in milliseconds and written
//! as hours, minutes, seconds and milliseconds; surrounding whitespace changes nothing.

use portcullis_shared::duration::parse_millis;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(ms) = parse_millis(&text) else { return };
    assert!(text.trim().bytes().all(|b| b.is_ascii_digit() || b"hms".contains(&b)), "accepted {text:?}");
    assert_eq!(parse_millis(&format!("{ms}ms")), Ok(ms));
    let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    assert_eq!(parse_millis(&format!("{h}h{m}m{s}s{rest}ms")), Ok(ms), "{text:?} is {ms} ms");
    assert_eq!(parse_millis(&format!(" {text}\t")), Ok(ms));
}
