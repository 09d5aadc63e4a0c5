//! Telling systemd (or any service manager that speaks `sd_notify`) how the cluster is:
//! `READY=1` once every worker is ready, `STATUS=` (e.g. `4/4 ready, generation 3`),
//! `RELOADING=1` with `MONOTONIC_USEC=` when a rolling reload starts and `READY=1` when it
//! ends, `STOPPING=1` on stop, and `WATCHDOG=1` at half of `WATCHDOG_USEC` while the
//! primary's event loop runs. Only when `NOTIFY_SOCKET` is set; `Type=notify` units default
//! to `NotifyAccess=main`, so the primary aggregates its workers and speaks for them.

use std::time::Duration;

use sd_notify::NotifyState;
use serde::Serialize;

use crate::api::events::ClusterEvent;
use crate::api::handle::ClusterHandle;
use crate::api::status::WorkerState;

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub(crate) fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// `WATCHDOG=1` at half of `WATCHDOG_USEC` while the primary's event loop runs, until `until`
/// completes: a tree's beat (a cluster beats in [`notify`]). Nothing without a watchdog.
pub(crate) async fn watchdog(until: impl std::future::Future<Output = ()>) {
    let Some(every) = sd_notify::watchdog_enabled().filter(|_| wanted()) else { return };
    let mut beat = tokio::time::interval(every / 2);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = beat.tick() => send(&[NotifyState::Watchdog]),
            () = &mut until => return,
        }
    }
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (an upgrade begins), when under a service manager.
pub(crate) fn reloading() {
    if wanted() {
        match NotifyState::monotonic_usec_now() {
            Ok(usec) => send(&[NotifyState::Reloading, usec]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }
}

/// `READY=1` (an upgrade was refused: back to ready), when under a service manager.
pub(crate) fn ready() {
    if wanted() {
        send(&[NotifyState::Ready]);
    }
}

/// `STOPPING=1` with a status line, when under a service manager.
pub(crate) fn stopping(status: &str) {
    if wanted() {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// `STATUS=…`, when under a service manager.
pub(crate) fn status(status: &str) {
    if wanted() {
        send(&[NotifyState::Status(status)]);
    }
}

/// Follows the cluster's events and tells the service manager, until the cluster stops.
pub(crate) async fn notify<M, R>(cluster: ClusterHandle<M, R>, upgrading: bool)
where
    M: Serialize + Clone + Send + 'static,
    R: Clone + Send + 'static,
{
    let mut events = cluster.subscribe_lifecycle();
    let watchdog = sd_notify::watchdog_enabled();
    let mut beat = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w / 2));
    // A new image after an upgrade: ready again once its reload replaced the workers.
    let mut reloading = upgrading;
    let mut ready_once = upgrading;
    let mut generation = 1u64;
    let mut last_status = String::new();
    loop {
        let event = tokio::select! {
            _ = beat.tick(), if watchdog.is_some() => {
                send(&[NotifyState::Watchdog]);
                continue;
            }
            event = events.recv() => event,
        };
        let Some(event) = event else { return };
        match &event {
            ClusterEvent::Reloading { .. } => {
                reloading = true;
                let now = NotifyState::monotonic_usec_now();
                match &now {
                    Ok(usec) => send(&[NotifyState::Reloading, usec.clone()]),
                    Err(_) => send(&[NotifyState::Reloading]),
                }
            }
            ClusterEvent::Reloaded { error, .. } => {
                reloading = false;
                if error.is_none() {
                    generation += 1;
                }
                send(&[NotifyState::Ready]);
            }
            ClusterEvent::Stopping => {
                send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
                return;
            }
            ClusterEvent::Ready { .. } | ClusterEvent::Exit { .. } | ClusterEvent::GaveUp { .. } => {}
            _ => continue,
        }
        let Ok(status) = cluster.status().await else { return };
        let ready = status.iter().filter(|w| w.state == WorkerState::Ready).count();
        let text = format!("{ready}/{} ready, generation {generation}", status.len());
        if !ready_once && ready == status.len() && !reloading {
            ready_once = true;
            send(&[NotifyState::Ready, NotifyState::Status(&text)]);
        } else if text != last_status {
            send(&[NotifyState::Status(&text)]);
        }
        last_status = text;
    }
}
