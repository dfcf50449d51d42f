//! Runs the clients file reconciler ([`portcullis_oauth2::clients_file`], where resources are
//! read, validated and applied) as a background task of the server. It must not reconcile
//! anything itself.

use std::time::Duration;

pub use portcullis_oauth2::clients_file::*;

use crate::app::AppState;

/// Starts the reconciler when `oauth2.clients_file` is set: one pass now, then whenever the
/// files change (and every minute).
pub fn spawn(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    state.config.oauth2.clients_file.as_ref()?;
    Some(tokio::spawn(async move {
        let mut me = Reconciler::default();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_full = Duration::ZERO;
        loop {
            tick.tick().await;
            since_full += POLL;
            let force = since_full >= RESYNC;
            if let Some(report) = me.pass(&state.oauth2(), force).await {
                since_full = Duration::ZERO;
                log(&report);
            }
        }
    }))
}

#[cfg(test)]
mod tests;
