//! A scene's feed loop on its own thread (`Runner`): the catch-up at once, then live
//! batches, positions committed after each apply (to this node's feed files, or in a
//! cluster to the feed book under the scene's lease); and where a leased scene starts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use citybrain_core::DatasetName;
use citybrain_hub::{Hub, Positions};

use super::{Phase, Scene, SceneContext, Status, Worker, lease};

/// Where a leased scene starts on this node: what its last node committed (this node's
/// positions and the others'), and the places its replay starts from, a replay window
/// before those ([`Scene::replay_window`]; none: the whole history).
pub(super) struct ClusterStart {
    pub own: Positions,
    pub others: citybrain_hub::Origins,
    pub replay_own: Positions,
    pub replay_others: citybrain_hub::Origins,
}

pub(super) async fn cluster_start(
    ctx: &SceneContext,
    scene: &dyn Scene,
) -> Result<ClusterStart, String> {
    let Some(window) = scene.replay_window() else {
        return Ok(ClusterStart {
            own: Positions::new(),
            others: citybrain_hub::Origins::new(),
            replay_own: Positions::new(),
            replay_others: citybrain_hub::Origins::new(),
        });
    };
    let hub = ctx.hub.clone();
    let name = scene.name();
    let mut others = tokio::task::spawn_blocking(move || {
        hub.feed_book()
            .expect("a cluster has a feed book")
            .committed(name)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading where the scene's last node stood: {e}"))?;
    let me = ctx.hub.node_id().unwrap_or_default();
    let own = others.remove(me).unwrap_or_default();
    let back = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let before = |positions: &Positions| -> Positions {
        positions
            .iter()
            .map(|(d, p)| (d.clone(), citybrain_hub::Position(p.0.saturating_sub(back))))
            .collect()
    };
    Ok(ClusterStart {
        replay_own: before(&own),
        replay_others: others.iter().map(|(n, p)| (n.clone(), before(p))).collect(),
        own,
        others,
    })
}

/// Changes taken from the feed per `apply` at most (live batches that queued up).
const APPLY_CHANGES: usize = 256;

/// One scene's feed loop.
pub(super) struct Runner {
    /// Where the subscription started: applied once the worker has warmed up.
    pub(super) from: Positions,
    /// In a cluster, what was applied of the other nodes' rows before this start.
    pub(super) others: citybrain_hub::Origins,
    pub(super) name: &'static str,
    pub(super) hub: Arc<Hub>,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) worker: Box<dyn Worker>,
    pub(super) subscription: citybrain_hub::Subscription,
    /// Set when the scene is to stop here (its lease lost).
    pub(super) stop: Arc<AtomicBool>,
    /// In a cluster, this node's id: positions are committed to the cluster's feed book
    /// under the scene's lease; otherwise to this node's feed files.
    pub(super) node: Option<String>,
}

/// How long the feed loop waits for a change before it looks at `stop` again.
const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

impl Runner {
    pub(super) fn run(mut self) {
        self.worker.warm();
        let caught_up = self.subscription.catching_up() == 0;
        if caught_up {
            self.worker.caught_up();
        }
        let mut applied = std::mem::take(&mut self.from);
        let mut applied_others = std::mem::take(&mut self.others);
        {
            let mut status = self.status.lock().expect("status lock");
            status.applied = applied.clone();
            if caught_up {
                status.phase = Phase::Running;
            }
        }
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let first = match self
                .subscription
                .recv_until(std::time::Instant::now() + STOP_CHECK)
            {
                citybrain_hub::Recv::Change(change) => change,
                citybrain_hub::Recv::Idle => continue,
                citybrain_hub::Recv::Closed => break,
            };
            let replaying = first.replayed;
            let mut changes = vec![first];
            if replaying {
                // The whole catch-up at once (a scene may reorder it by event time).
                while self.subscription.catching_up() > 0 {
                    changes.extend(self.subscription.try_recv());
                }
            } else {
                // Live batches that queued up, together.
                while changes.len() < APPLY_CHANGES {
                    match self.subscription.try_recv() {
                        Some(change) => changes.push(change),
                        None => break,
                    }
                }
            }
            let reached: BTreeMap<DatasetName, citybrain_hub::Position> = changes
                .iter()
                .filter(|c| c.origin.is_none())
                .map(|c| (c.dataset.clone(), c.position))
                .collect();
            let mut others = citybrain_hub::Origins::new();
            for change in changes.iter().filter(|c| c.origin.is_some()) {
                let origin = change.origin.as_deref().unwrap_or_default().to_string();
                others
                    .entry(origin)
                    .or_default()
                    .insert(change.dataset.clone(), change.position);
            }
            self.worker.apply(changes);
            if replaying {
                self.worker.caught_up();
            }
            // Never back: a replay from before the committed place ends past it.
            let forward = |into: &mut Positions, reached: Positions| {
                for (dataset, position) in reached {
                    let at = into.entry(dataset).or_insert(position);
                    *at = (*at).max(position);
                }
            };
            forward(&mut applied, reached);
            for (origin, positions) in others {
                forward(applied_others.entry(origin).or_default(), positions);
            }
            let pending = self.subscription.pending();
            {
                let mut status = self.status.lock().expect("status lock");
                status.applied = applied.clone();
                status.others = applied_others.clone();
                status.pending = pending;
                if self.subscription.catching_up() == 0 {
                    status.phase = Phase::Running;
                }
            }
            if let Some(node) = &self.node {
                let mut all = applied_others.clone();
                all.insert(node.clone(), applied.clone());
                let book = self.hub.feed_book().expect("a cluster has a feed book");
                match book.commit(self.name, &lease::name(self.name), node, &all) {
                    Ok(true) => {
                        self.status.lock().expect("status lock").committed = applied.clone()
                    }
                    Ok(false) => tracing::warn!(
                        message = "A scene's positions were not committed: this node no longer holds its lease (it stops at the lease keeper's next round).",
                        scene = self.name
                    ),
                    Err(error) => {
                        tracing::error!(message = "Committing a scene's feed positions to the cluster failed; the next commit carries them.", scene = self.name, %error)
                    }
                }
                continue;
            }
            match self.hub.commit(self.name, &applied) {
                Ok(()) => self.status.lock().expect("status lock").committed = applied.clone(),
                Err(error) => {
                    tracing::error!(message = "Committing a scene's feed position failed; it will be handed the batches again after a restart.", scene = self.name, %error);
                }
            }
        }
        let mut status = self.status.lock().expect("status lock");
        status.phase = Phase::Stopped;
    }
}
