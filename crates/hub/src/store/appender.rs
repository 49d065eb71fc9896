//! Where the active generation's frames go: a file of this machine per generation, or a
//! shared log off it (NATS JetStream), and what a seal lets that log forget.

use std::path::Path;
use std::sync::Arc;

use super::{io_err, log_path};
use crate::HubError;
use crate::log::{LogWriter, SharedLog};

/// Where the active generation's frames go.
#[derive(Debug)]
pub(super) enum Log {
    /// A file of this machine per generation (`log/<generation>.log`), fsynced.
    File(LogWriter),
    /// A log off this machine (NATS JetStream): frames tagged with their generation.
    Shared {
        log: Arc<dyn SharedLog>,
        dataset: String,
        /// Whether the active generation has frames.
        appended: bool,
        /// The newest frame's sequence, of any generation.
        last_sequence: Option<u64>,
    },
}

impl Log {
    pub(super) fn append(&mut self, generation: u64, parts: &[&[u8]]) -> Result<(), HubError> {
        match self {
            Log::File(writer) => {
                let result = if let [frame] = parts {
                    writer.append_durable(frame)
                } else {
                    writer.append_parts_durable(parts)
                };
                result.map_err(io_err("appending to the log"))
            }
            Log::Shared {
                log,
                dataset,
                appended,
                last_sequence,
            } => {
                let sequence = log.append(dataset, generation, parts).map_err(|source| {
                    HubError::LogUnavailable {
                        log: log.describe(),
                        context: format!(
                            "appending to {dataset} (the call is not acknowledged; it may still be stored once the log is back: check before sending it again)"
                        ),
                        source,
                    }
                })?;
                *appended = true;
                *last_sequence = Some(sequence);
                Ok(())
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Log::File(writer) => writer.is_empty(),
            Log::Shared { appended, .. } => !appended,
        }
    }

    /// The log of the next generation.
    pub(super) fn next(&self, dir: &Path, generation: u64) -> Result<Log, HubError> {
        Ok(match self {
            Log::File(_) => Log::File(
                LogWriter::create(&log_path(dir, generation))
                    .map_err(io_err(format!("creating a log in {}", dir.display())))?,
            ),
            Log::Shared {
                log,
                dataset,
                last_sequence,
                ..
            } => Log::Shared {
                log: log.clone(),
                dataset: dataset.clone(),
                appended: false,
                last_sequence: *last_sequence,
            },
        })
    }

    /// After a seal committed: what to drop from a shared log (its frames through the
    /// sequence), or None for files (the sealed generations' files are deleted).
    pub(super) fn sealed_through(&self) -> Option<(Arc<dyn SharedLog>, String, u64)> {
        match self {
            Log::File(_) => None,
            Log::Shared {
                log,
                dataset,
                last_sequence,
                ..
            } => last_sequence.map(|s| (log.clone(), dataset.clone(), s)),
        }
    }
}
