//! One pass over a recorded stream split across threads by plate.
//!
//! Every operator's state is per plate except the link bins' travel times, which are pooled
//! before their medians are taken (see [`merge`]); so plates can be dealt to partitions, each
//! on its own thread, and the partitions' rows combined at the end into exactly the rows of
//! one pass. The caller's thread decodes, applies the lateness rule once for the whole
//! stream (lateness is relative to the newest record of all, which no partition sees) and
//! routes compact records to their plate's partition.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::traffic::{
    Admission, Counters, Link, LocalPrefix, Outputs, Record, TrafficConfig, TrafficIndices,
    for_each_passage, merge, partition_of_key,
};

/// Batches of records in flight to a partition before the router waits for it.
const IN_FLIGHT: usize = 4;

/// A split pass: push Arrow batches of passages in stream order, then [`SplitPass::finish`].
#[derive(Debug)]
pub struct SplitPass {
    config: TrafficConfig,
    local: LocalPrefix,
    links: Vec<Link>,
    admission: Admission,
    senders: Vec<SyncSender<Vec<Record>>>,
    workers: Vec<JoinHandle<TrafficIndices>>,
}

impl SplitPass {
    /// Starts `threads` partitions (at least one).
    pub fn new(config: TrafficConfig, links: Vec<Link>, threads: usize) -> Self {
        let (senders, workers) = (0..threads.max(1))
            .map(|_| {
                let (tx, rx) = sync_channel::<Vec<Record>>(IN_FLIGHT);
                let mut part = TrafficIndices::partition(config.clone(), links.clone());
                let worker = std::thread::spawn(move || {
                    for records in rx {
                        part.push_records(&records);
                    }
                    part
                });
                (tx, worker)
            })
            .unzip();
        Self {
            admission: Admission::new(&config),
            local: LocalPrefix::new(&config.local_prefixes),
            config,
            links,
            senders,
            workers,
        }
    }

    /// Routes a batch of passages (columns `ts`, `checkpoint_id`, `plate`) to the partitions.
    pub fn push_batch(&mut self, batch: &arrow::array::RecordBatch) -> Result<(), String> {
        let parts = self.senders.len();
        let mut routed: Vec<Vec<Record>> = (0..parts)
            .map(|_| Vec::with_capacity(batch.num_rows() / parts + 64))
            .collect();
        let (admission, local) = (&mut self.admission, &self.local);
        for_each_passage(batch, |passage| {
            if admission.admit(passage.ts) {
                let record = Record::new(passage, local);
                routed[partition_of_key(record.plate, parts)].push(record);
            }
        })?;
        for (records, tx) in routed.into_iter().zip(&self.senders) {
            if !records.is_empty() {
                tx.send(records)
                    .map_err(|_| "a partition of the pass stopped".to_string())?;
            }
        }
        Ok(())
    }

    /// Applies everything, closes every window and combines the partitions' rows.
    pub fn finish(self) -> (Outputs, Counters) {
        drop(self.senders);
        let partitions: Vec<TrafficIndices> = self
            .workers
            .into_iter()
            .map(|w| w.join().expect("a partition of the pass panicked"))
            .collect();
        let end = partitions
            .first()
            .map_or(0, |p| p.end_for(self.admission.newest()));
        let partials = partitions
            .into_iter()
            .map(|p| p.finish_partial(end))
            .collect();
        let (outputs, mut counters) = merge(self.config, self.links, partials);
        counters.late_dropped += self.admission.late_dropped;
        (outputs, counters)
    }
}
