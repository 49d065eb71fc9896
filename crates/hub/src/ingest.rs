//! The one write path: a body decoded against its dataset's definition, stamped, made
//! durable in the log (or the shared log), published to the change feed, and the tail
//! sealed in the background once it is large enough. Every write (HTTP, MQTT, replay, a
//! scene's own outputs) comes through [`Hub::ingest`] and its siblings.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use citybrain_core::{DatasetName, Timestamp};
use serde::Serialize;

use crate::{
    DatasetDef, DecodeError, Entry, Format, Hub, HubError, MAX_LISTED_PROBLEMS, Position, Problem,
    decode, feed, mapping, parquet_in, refresh_open_table,
};

/// The problems of a refused batch: every bad record, up to [`MAX_LISTED_PROBLEMS`] listed.
#[derive(Debug, Clone, Serialize)]
pub struct RejectionReport {
    pub total: usize,
    pub rejected: usize,
    pub problems: Vec<Problem>,
    /// True when more problems exist than are listed.
    pub truncated: bool,
}

/// What to do with a batch that has bad records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Store nothing and report every bad record.
    #[default]
    Reject,
    /// Store the good records; keep the bad ones in the dead-letter dataset.
    Skip,
}

/// The outcome of an accepted ingest call.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub rejected: usize,
    /// Where the rejected records went, in skip mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<DatasetName>,
    pub problems: Vec<Problem>,
    pub truncated: bool,
    /// The batch's place in the change feed (absent when nothing was stored): a scene's
    /// watermark reaching it means the scene has applied the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// True when the call's idempotency key was already stored: nothing was stored again,
    /// and the counts are the first call's (its problems are not kept).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// What a keyed call stored, kept with its records (`log::CallKey::call`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct CallSummary {
    accepted: usize,
    rejected: usize,
    #[serde(default)]
    dead_letters: bool,
    #[serde(default)]
    position: Option<i64>,
}

/// Where [`Hub::keyed_call`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nodes {
    ThisOne,
    All,
}

/// The longest idempotency key taken.
pub const MAX_KEY_LEN: usize = 200;

/// Checks an idempotency key: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "an idempotency key is 1 to {MAX_KEY_LEN} characters; this one has {}",
            key.len()
        ));
    }
    if let Some(c) = key.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "an idempotency key is visible ASCII (letters, digits, punctuation); it has {c:?}"
        ));
    }
    Ok(())
}

/// An ingest call beyond its body: a feed mapping, what to do with bad records, and an
/// idempotency key (a call sent again with the same key within a day stores nothing
/// again and answers what the first stored).
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestCall<'a> {
    pub mapping: Option<&'a str>,
    pub on_error: OnError,
    pub key: Option<&'a str>,
}

impl Hub {
    /// [`Hub::ingest_bytes`] with a mapping and an idempotency key ([`IngestCall`]).
    pub fn ingest_call(
        &self,
        name: &DatasetName,
        format: Format,
        body: bytes::Bytes,
        call: IngestCall<'_>,
        now: Timestamp,
    ) -> Result<IngestReport, HubError> {
        if let Some(key) = call.key {
            check_key(key).map_err(|e| HubError::Internal(format!("unchecked key: {e}")))?;
        }
        self.ingest_from(name, format, &body, Some(&body), call, now)
    }

    /// What a keyed call to `entry`'s dataset stored, on this node or (in a cluster
    /// sharing segments) on another.
    fn keyed_call(
        &self,
        entry: &Entry,
        key: &str,
        nodes: Nodes,
    ) -> Result<Option<IngestReport>, HubError> {
        let mut call = entry.store.keyed_call(key);
        if call.is_none()
            && nodes == Nodes::All
            && let Some(cluster) = &self.cluster
        {
            let mut foreign = entry.foreign.lock().expect("foreign lock");
            foreign.refresh(cluster, &entry.def, &entry.store.schema())?;
            call = foreign.keyed_call(key);
        }
        let Some(call) = call else {
            return Ok(None);
        };
        let summary: CallSummary = serde_json::from_str(&call)
            .map_err(|e| HubError::Internal(format!("a stored call summary is unreadable: {e}")))?;
        Ok(Some(IngestReport {
            accepted: summary.accepted,
            rejected: summary.rejected,
            dead_letters: summary.dead_letters.then(|| entry.def.name.rejected()),
            problems: Vec::new(),
            truncated: false,
            position: summary.position.map(Position),
            replayed: true,
        }))
    }

    /// Validates a body and stores its records durably; see [`OnError`] for bad records.
    /// Returns once every stored record is fsynced.
    pub fn ingest(
        &self,
        name: &DatasetName,
        format: Format,
        body: &[u8],
        on_error: OnError,
        now: Timestamp,
    ) -> Result<IngestReport, HubError> {
        let call = IngestCall {
            on_error,
            ..IngestCall::default()
        };
        self.ingest_from(name, format, body, None, call, now)
    }

    /// [`Hub::ingest`] through the dataset's feed mapping `mapping` (see [`mapping`]).
    pub fn ingest_mapped(
        &self,
        name: &DatasetName,
        format: Format,
        mapping: &str,
        body: &[u8],
        on_error: OnError,
        now: Timestamp,
    ) -> Result<IngestReport, HubError> {
        let call = IngestCall {
            mapping: Some(mapping),
            on_error,
            key: None,
        };
        self.ingest_from(name, format, body, None, call, now)
    }

    /// [`Hub::ingest`] of a body already held as [`bytes::Bytes`] (as a server receives
    /// one): a Parquet body is decoded in place instead of copied first.
    pub fn ingest_bytes(
        &self,
        name: &DatasetName,
        format: Format,
        body: bytes::Bytes,
        on_error: OnError,
        now: Timestamp,
    ) -> Result<IngestReport, HubError> {
        let call = IngestCall {
            on_error,
            ..IngestCall::default()
        };
        self.ingest_from(name, format, &body, Some(&body), call, now)
    }

    fn ingest_from(
        &self,
        name: &DatasetName,
        format: Format,
        body: &[u8],
        owned: Option<&bytes::Bytes>,
        call: IngestCall<'_>,
        now: Timestamp,
    ) -> Result<IngestReport, HubError> {
        let IngestCall {
            mapping,
            on_error,
            key,
        } = call;
        let entry = self.entry(name)?;
        if name.is_rejected() {
            return Err(HubError::ReadOnly(name.clone()));
        }
        // A call sent again: answered from what the first stored, before any decoding.
        if let Some(key) = key
            && let Some(report) = self.keyed_call(&entry, key, Nodes::All)?
        {
            return Ok(report);
        }
        let mapper = match mapping {
            Some(m) => Some(
                mapping::Mapper::new(&entry.def, m, &self.config.zone)
                    .map_err(|e| HubError::Decode(DecodeError::Mapping(e)))?,
            ),
            None => None,
        };
        let (batches, rejected_records) = match (format, owned) {
            (Format::Parquet, Some(bytes)) if mapper.is_none() => {
                let parts = parquet_in::decode_parquet_parts(
                    &entry.def,
                    bytes.clone(),
                    parquet_in::Reading::Ingest(self.limits),
                )?;
                (parts.batches, parts.rejected)
            }
            _ => {
                let decoded = decode::decode_mapped_within(
                    &entry.def,
                    mapper.as_ref(),
                    format,
                    body,
                    &self.limits,
                )?;
                (vec![decoded.batch], decoded.rejected)
            }
        };
        let accepted: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let listed: Vec<Problem> = rejected_records
            .iter()
            .flat_map(|r| r.problems.iter().cloned())
            .take(MAX_LISTED_PROBLEMS + 1)
            .collect();
        let truncated = listed.len() > MAX_LISTED_PROBLEMS;
        let listed: Vec<Problem> = listed.into_iter().take(MAX_LISTED_PROBLEMS).collect();
        if !rejected_records.is_empty() && on_error == OnError::Reject {
            return Err(HubError::BatchRejected {
                rejected: RejectionReport {
                    total: accepted + rejected_records.len(),
                    rejected: rejected_records.len(),
                    problems: listed,
                    truncated,
                },
            });
        }
        let rejected = rejected_records.len();
        // Found before anything is stored: a call that cannot keep its refused records
        // stores nothing (the dead-letter dataset is closed if its catalog row is unreadable).
        let dead = if rejected > 0 {
            Some(self.entry(&name.rejected()).map_err(|_| {
                HubError::Internal(format!(
                    "the dead-letter dataset {} is not open, so refused records cannot be kept; \
                     nothing was stored (see the log at start)",
                    name.rejected()
                ))
            })?)
        } else {
            None
        };
        // Stamped, stored and published in one order per dataset (see `Entry::order`).
        let order = entry.order.lock().expect("ingest order lock");
        // The same key sent twice at once on this node: the second waited for the first.
        // (The other nodes were asked above, outside the lock.)
        if let Some(key) = key
            && let Some(report) = self.keyed_call(&entry, key, Nodes::ThisOne)?
        {
            return Ok(report);
        }
        let stamp = self.next_stamp(now);
        let schema = entry.store.schema();
        let stored = batches
            .into_iter()
            .map(|b| with_ingested_at(&schema, b, stamp))
            .collect::<Result<Vec<_>, _>>()?;
        let position = feed::Position(stamp.0);
        let call_key = key.map(|key| crate::log::CallKey {
            key: key.to_string(),
            call: serde_json::to_string(&CallSummary {
                accepted,
                rejected,
                dead_letters: rejected > 0,
                position: (accepted > 0).then_some(stamp.0),
            })
            .expect("a summary serialises"),
        });
        if format == Format::Parquet && rejected == 0 {
            entry
                .store
                .append_parquet(stored.clone(), body, stamp, call_key.as_ref())?;
        } else {
            let one = match stored.as_slice() {
                [one] => one.clone(),
                _ => arrow::compute::concat_batches(&schema, &stored)
                    .map_err(|e| HubError::Internal(format!("joining decoded batches: {e}")))?,
            };
            entry.store.append_keyed(one, call_key.as_ref())?;
        }
        let stored: Vec<RecordBatch> = stored.into_iter().filter(|b| b.num_rows() > 0).collect();
        if !stored.is_empty() {
            self.feed.publish(name, position, &stored);
        }
        let mut dead_letters = None;
        if let Some(dead) = dead {
            let batch = rejected_batch(&dead.def, &rejected_records, stamp)?;
            dead.store.append(batch.clone())?;
            self.feed.publish(&dead.def.name, position, &[batch]);
            dead_letters = Some(name.rejected());
        }
        drop(order);
        self.maybe_seal(&entry);
        Ok(IngestReport {
            accepted,
            rejected,
            dead_letters,
            problems: listed,
            truncated,
            position: (!stored.is_empty()).then_some(position),
            replayed: false,
        })
    }

    fn maybe_seal(&self, entry: &Entry) {
        if entry.store.tail_rows() < self.config.seal_rows {
            return;
        }
        let store = entry.store.clone();
        let open_table = self
            .config
            .open_tables
            .clone()
            .map(|root| (root, self.open_tables.clone(), entry.def.clone()));
        let seal_rows = self.config.seal_rows;
        let handle = std::thread::spawn(move || {
            loop {
                match store.seal() {
                    Err(error) => {
                        tracing::error!(message = "Sealing failed; the records stay in the log.", %error);
                        return;
                    }
                    // Nothing to seal, or another seal is running: that one looks again
                    // when it is done (below).
                    Ok(0) => return,
                    Ok(_) => {
                        if let Some((root, lock, def)) = &open_table {
                            refresh_open_table(root, lock, def, &store);
                        }
                    }
                }
                // A seal asked for while this one ran found it running and did nothing:
                // rows that reached the threshold meanwhile are sealed now, not at the
                // next ingest (which may never come).
                if store.tail_rows() < seal_rows {
                    return;
                }
            }
        });
        let mut sealers = self.sealers.lock().expect("sealers lock");
        sealers.retain(|h| !h.is_finished());
        sealers.push(handle);
    }

    /// Seals every dataset's tail now (used by benchmarks and before backups).
    pub fn seal_all(&self) -> Result<u64, HubError> {
        let entries = self.entries();
        let mut rows = 0;
        for entry in entries {
            let sealed = entry.store.seal()?;
            if sealed > 0
                && let Some(root) = &self.config.open_tables
            {
                refresh_open_table(root, &self.open_tables, &entry.def, &entry.store);
            }
            rows += sealed;
        }
        Ok(rows)
    }
}

fn with_ingested_at(
    schema: &arrow::datatypes::SchemaRef,
    batch: RecordBatch,
    now: Timestamp,
) -> Result<RecordBatch, HubError> {
    with_ingested_at_of(schema, batch, now.0)
}

/// The same, for a time read back from the log (microseconds).
pub(crate) fn with_ingested_at_of(
    schema: &arrow::datatypes::SchemaRef,
    batch: RecordBatch,
    now_us: i64,
) -> Result<RecordBatch, HubError> {
    let mut columns = batch.columns().to_vec();
    let times =
        TimestampMicrosecondArray::from_value(now_us, batch.num_rows()).with_timezone("UTC");
    columns.push(Arc::new(times));
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| HubError::Internal(format!("stored batch does not fit its schema: {e}")))
}

/// One dead-letter row per problem, so each can be queried by field and reason.
fn rejected_batch(
    def: &DatasetDef,
    rejected: &[decode::Rejected],
    now: Timestamp,
) -> Result<RecordBatch, HubError> {
    let rows: Vec<(&decode::Rejected, &Problem)> = rejected
        .iter()
        .flat_map(|r| r.problems.iter().map(move |p| (r, p)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(r, _)| r.line as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter()
                .map(|(_, p)| p.field.clone().unwrap_or_default()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, p)| p.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(r, _)| r.raw.as_str()),
        )),
    ];
    let schema = decode::data_schema(def);
    let batch = RecordBatch::try_new(schema, columns)
        .map_err(|e| HubError::Internal(format!("dead-letter batch: {e}")))?;
    with_ingested_at(&def.arrow_schema(), batch, now)
}
