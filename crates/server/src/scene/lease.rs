//! Scenes in a cluster (issue 25): a scene that reads the change feed, stores what it
//! yields or acts on a timer runs on one node at a time, the node that holds its lease
//! (`citybrain_hub::cluster::Leases`, in the PostgreSQL the nodes share). Every node runs
//! a keeper that, every [`RENEW`], renews the leases it holds and tries to take the
//! others; a lease lasts [`LEASE`], so when its node dies a survivor takes the scene
//! within `LEASE + RENEW` and starts it over the cluster's change feed (every node's
//! rows). A node that cannot renew stops the scene before its lease could lapse, so two
//! nodes never run one scene for longer than the database takes to answer.
//!
//! Each scene is one partition for now: it runs whole on its node. Splitting the heavy
//! ones (traffic by plate hash, parking by lot) over several nodes is the next step.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Entry, Phase, SceneContext, Scenes};

/// How long a lease lasts past its last renewal.
pub const LEASE: Duration = Duration::from_secs(6);
/// How often leases are renewed and lapsed ones taken.
pub const RENEW: Duration = Duration::from_secs(2);

/// The lease's name for scene `scene`.
pub fn name(scene: &str) -> String {
    format!("scene/{scene}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the keeper until the server stops. The task holds only a weak reference and takes
/// the context from the scenes each round: at shutdown the runtime drops its tasks on its
/// own threads, where dropping the last handle on the hub or governance (which own
/// runtimes of their own) would panic.
pub(super) fn spawn_keeper(scenes: &Arc<Scenes>, node: String) {
    let scenes = Arc::downgrade(scenes);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            let Some(round) = scenes.upgrade() else {
                break;
            };
            if round.closing.load(Ordering::SeqCst) {
                break;
            }
            let Some(ctx) = round.keeper_ctx.lock().expect("keeper lock").clone() else {
                break;
            };
            round.keep_leases(&ctx, &node).await;
        }
    });
}

impl Scenes {
    /// One round: renew what this node holds, take what lapsed, stop what another took.
    pub(super) async fn keep_leases(&self, ctx: &SceneContext, node: &str) {
        for entry in self
            .entries
            .iter()
            .filter(|e| e.leased.load(Ordering::SeqCst))
        {
            if self.closing.load(Ordering::SeqCst) {
                return;
            }
            let scene = entry.scene.name();
            let hub = ctx.hub.clone();
            let (lease, me, address) = (name(scene), node.to_string(), ctx.config.address.clone());
            let asked = now_ms();
            let taken = tokio::task::spawn_blocking(move || {
                hub.leases().expect("a cluster has leases").take(
                    &lease,
                    &me,
                    &address,
                    asked,
                    LEASE.as_millis() as i64,
                )
            })
            .await
            .map_err(|e| citybrain_hub::HubError::Internal(e.to_string()))
            .and_then(|taken| taken);
            match taken {
                Ok(holder) if holder.node == node => {
                    entry.held_until.store(holder.until_ms, Ordering::SeqCst);
                    *entry.holder.lock().expect("holder lock") = None;
                    if !entry.held.swap(true, Ordering::SeqCst) {
                        tracing::info!(
                            message = "This node took a scene's lease and starts it.",
                            scene
                        );
                        if let Err(reason) = self.start_one(entry, ctx).await {
                            tracing::error!(message = "A scene failed to start; its lease is given up for another node to try.", scene, %reason);
                            entry.held.store(false, Ordering::SeqCst);
                            set(entry, Phase::Failed, reason);
                            let hub = ctx.hub.clone();
                            let (lease, me) = (name(scene), node.to_string());
                            let _ = tokio::task::spawn_blocking(move || {
                                hub.leases().map(|l| l.release(&lease, &me))
                            })
                            .await;
                        }
                    }
                }
                Ok(holder) => {
                    if entry.held.swap(false, Ordering::SeqCst) {
                        tracing::warn!(message = "Another node holds a scene's lease; it stops here.", scene, node = %holder.node);
                        stop_here(entry).await;
                    }
                    set(
                        entry,
                        Phase::Elsewhere,
                        format!(
                            "it runs on node {} ({}) of this cluster",
                            holder.node, holder.address
                        ),
                    );
                    *entry.holder.lock().expect("holder lock") = Some(holder);
                }
                Err(error) => {
                    tracing::warn!(message = "A scene's lease could not be renewed or taken; asking again.", scene, %error);
                    // Stop before the lease could lapse and another node take it.
                    let until = entry.held_until.load(Ordering::SeqCst);
                    if entry.held.load(Ordering::SeqCst)
                        && now_ms() + RENEW.as_millis() as i64 >= until
                    {
                        entry.held.store(false, Ordering::SeqCst);
                        stop_here(entry).await;
                        set(
                            entry,
                            Phase::Elsewhere,
                            format!("its lease could not be renewed: {error}"),
                        );
                    }
                }
            }
        }
    }
}

fn set(entry: &Entry, phase: Phase, reason: String) {
    let mut status = entry.status.lock().expect("status lock");
    status.phase = phase;
    status.reason = Some(reason);
}

/// Stops a scene this node no longer holds (its feed loop ends within a batch).
async fn stop_here(entry: &Entry) {
    // The join waits on the scene's thread: off the async workers.
    tokio::task::block_in_place(|| Scenes::stop_one(entry));
}
