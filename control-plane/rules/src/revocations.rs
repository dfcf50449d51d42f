//! The revocation list in the snapshot: digests of signed-out sessions and revoked access
//! tokens, each kept only while the session or token would still be valid (the store drops
//! the others: `revoked_tokens.expires_at`, read expiry-ordered), re-read on every revocation
//! and by the periodic refresher, so entries leave the snapshot once they expire.
//!
//! Publication is debounced: the first revocation after a quiet [`PUBLISH_DEBOUNCE`] is
//! published at once, and every revocation that follows within that time joins one trailing
//! publication at its end. A burst of N sign-outs therefore costs filters two recompiles
//! instead of N, no revocation waits longer than the debounce, and none is lost: a read of the
//! store that starts after a revocation was committed always follows it. The size of the list
//! is bounded where sessions are issued (`identity::session`), never by dropping an entry.
//! This module must not decide what is revoked; the store and its callers do.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Rules;
use portcullis_store::{Store, StoreError};

/// Revocations arriving within this time of the last publication are published together.
pub const PUBLISH_DEBOUNCE: Duration = Duration::from_millis(250);

/// The list as last read, and the debounce state.
#[derive(Default)]
pub(super) struct Revocations {
    /// Hex SHA-256 digests, sorted (snapshots are content-addressed: replicas must agree).
    digests: std::sync::Mutex<Vec<String>>,
    debounce: std::sync::Mutex<Debounce>,
    /// Serializes reads of the store with their publication, so an older read can never be
    /// published after a newer one.
    reload: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Debounce {
    /// When the last debounced read started.
    last: Option<Instant>,
    /// A trailing read is scheduled and has not started yet: later revocations join it.
    pending: bool,
    /// The newest `now` a caller passed, for the trailing read.
    now: i64,
}

impl Revocations {
    pub(super) fn digests(&self) -> Vec<String> {
        self.digests.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

impl Rules {
    /// Publishes the revoked tokens after a revocation was stored: at once when nothing was
    /// published in the last [`PUBLISH_DEBOUNCE`], otherwise together with every other
    /// revocation of that time, at its end. Returns whether this call published a new version.
    pub async fn refresh_revocations(self: &Arc<Self>, store: &Store, now: i64) -> Result<bool, StoreError> {
        let delay = {
            let mut d = self.revocations.debounce.lock().unwrap_or_else(|e| e.into_inner());
            d.now = d.now.max(now);
            if d.pending {
                return Ok(false);
            }
            match d.last.map(|t| t.elapsed()).filter(|e| *e < PUBLISH_DEBOUNCE) {
                None => {
                    d.last = Some(Instant::now());
                    None
                }
                Some(elapsed) => {
                    d.pending = true;
                    Some(PUBLISH_DEBOUNCE - elapsed)
                }
            }
        };
        let Some(delay) = delay else {
            return self.reload_revocations(store, now).await;
        };
        let (rules, store) = (Arc::clone(self), store.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let now = {
                let mut d = rules.revocations.debounce.lock().unwrap_or_else(|e| e.into_inner());
                // From here on a new revocation schedules its own read: this one may already
                // be past the point where it would see it.
                d.pending = false;
                d.last = Some(Instant::now());
                d.now
            };
            if let Err(e) = rules.reload_revocations(&store, now).await {
                // The periodic refresher re-reads within seconds.
                tracing::warn!(error = %e, "could not publish the revoked tokens");
            }
        });
        Ok(false)
    }

    /// Re-reads the revoked tokens that are still valid at `now` and publishes when they
    /// changed (a new revocation, or an expired one leaving). Not debounced: the periodic
    /// refresher calls it.
    pub async fn reload_revocations(&self, store: &Store, now: i64) -> Result<bool, StoreError> {
        let _serial = self.revocations.reload.lock().await;
        let revoked = store.revoked_tokens(now).await?;
        let changed = {
            let mut current = self.revocations.digests.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, revoked.clone()) != revoked
        };
        Ok(changed && self.publish(&self.active()))
    }
}
