//! Target `snapshot`: the body of `GET /admin/snapshot` as a filter receives it, decoded into a
//! `Snapshot` and compiled.
//! Asserts: no panic; a decoded snapshot survives its own wire form unchanged and compiles
//! the same way (same version, same number of rules, same error); a compiled snapshot keeps
//! its version.

use portcullis_shared::snapshot::Snapshot;

pub fn run(data: &[u8]) {
    let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) else { return };
    let wire = serde_json::to_vec(&snapshot).unwrap_or_else(|e| panic!("a snapshot does not serialise: {e}"));
    let again: Snapshot =
        serde_json::from_slice(&wire).unwrap_or_else(|e| panic!("its wire form does not decode: {e}"));
    assert_eq!(again, snapshot, "a snapshot changes through its wire form");
    match (snapshot.compile(), again.compile()) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.version, snapshot.version);
            assert_eq!((a.version, a.rules.len()), (b.version, b.rules.len()));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("compiles differently after a round trip: {:?} vs {:?}", a.err(), b.err()),
    }
}
