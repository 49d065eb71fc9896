//! Results handed out while they are produced, for readers that take rows as they come
//! (the Postgres wire): the server holds a bounded part of a result, not all of it, and the
//! first rows reach the reader before the last are computed.
//!
//! Key decision: a streamed read is still audited before its first row leaves, and the
//! trail still says how many rows it returned. A result of up to [`HOLD_ROWS`] rows is held
//! until it is complete and recorded once with its exact count, as `query_as` does. A
//! longer one is recorded when that many rows are held (the record's detail says it is
//! streamed and how many rows were held), then handed out batch by batch, and a second
//! record closes it (`Call::closes`) with the total and the outcome: an error part-way, a
//! limit, a reader that stopped reading. If the closing record cannot be written, the
//! reader gets an error instead of the end of its result.
//!
//! The limits are `query_as`'s: the same timeout, from the call to the last batch handed
//! out (so a reader that stops reading frees its slot within it), and the same result
//! limits (so the wire and HTTP answer a statement alike).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{
    DataCall, SqlEngine, SqlError, SqlLimits, audit, batch_bytes, cancel, governed, table,
};

/// Rows held before a result is handed out: a result this short is recorded once, with
/// its exact count, when complete. One DataFusion batch.
pub const HOLD_ROWS: usize = 8_192;

/// Batches produced ahead of the reader, besides the one being encoded.
const AHEAD: usize = 2;

/// A statement's result as it is produced (`SqlEngine::stream_with_params_as`). Dropping
/// it stops the statement at its operators' next batch.
pub struct ResultStream {
    schema: SchemaRef,
    held: VecDeque<RecordBatch>,
    /// The rest, when the result was longer than [`HOLD_ROWS`].
    rest: Option<mpsc::Receiver<RecordBatch>>,
    /// How the statement ended, set before the channel closes: a result ends cleanly only
    /// when the statement said so (a timeout while the reader lagged, an error, a task that
    /// stopped: the reader gets an error, never a shorter result that looks whole).
    end: Ending,
    _stop: Stop,
}

impl std::fmt::Debug for ResultStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultStream")
            .field("schema", &self.schema)
            .field("held", &self.held.len())
            .field("streaming", &self.rest.is_some())
            .finish()
    }
}

impl ResultStream {
    /// The result's columns, with text as `Utf8` (as `QueryResult` has them).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether the whole result is already held (at most [`HOLD_ROWS`] rows, recorded once,
    /// complete): reading it cannot fail, so a caller may answer it as one piece.
    pub fn is_whole(&self) -> bool {
        matches!(*self.end.lock().expect("end lock"), Some(Ok(())))
    }
}

impl Stream for ResultStream {
    type Item = Result<RecordBatch, SqlError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(batch) = self.held.pop_front() {
            return Poll::Ready(Some(Ok(batch)));
        }
        let Some(rest) = &mut self.rest else {
            return Poll::Ready(None);
        };
        match rest.poll_recv(cx) {
            Poll::Ready(Some(batch)) => Poll::Ready(Some(Ok(batch))),
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.rest = None;
                match self.end.lock().expect("end lock").take() {
                    Some(Ok(())) => Poll::Ready(None),
                    Some(Err(e)) => Poll::Ready(Some(Err(e))),
                    None => Poll::Ready(Some(Err(SqlError::Execution(
                        "the statement stopped before the end of its result".into(),
                    )))),
                }
            }
        }
    }
}

/// Sets the statement's cancel flag when its reader goes away.
struct Stop(cancel::CancelFlag);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How a statement's streamed result ended, set by its producer.
type Ending = Arc<std::sync::Mutex<Option<Result<(), SqlError>>>>;

/// What the producer hands the caller first: the schema and the held batches, once the
/// call is on the audit trail.
type Start = Result<(SchemaRef, Vec<RecordBatch>), SqlError>;

impl SqlEngine {
    /// `query_with_params_as`, with the result handed out while it is produced.
    pub async fn stream_with_params_as(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        call: &DataCall,
    ) -> Result<ResultStream, SqlError> {
        citybrain_gov::check_purpose(&call.purpose)
            .map_err(|e| SqlError::Invalid(e.to_string()))?;
        let deadline = Instant::now() + self.limits.timeout;
        let scope = self.scope(call.reader.clone(), call.now);
        let flag = cancel::CancelFlag::default();
        let stop = Stop(flag.clone());
        let ready = check_ready(self, sql, &scope, &flag);
        let (in_flight, ctx) = match ready {
            Ok(ready) => ready,
            Err(e) => {
                audit(
                    self.gov.as_deref(),
                    call,
                    sql,
                    &Default::default(),
                    Err(&e),
                    None,
                )?;
                return Err(e);
            }
        };
        let (start_tx, start_rx) = oneshot::channel();
        let (rest_tx, rest_rx) = mpsc::channel(AHEAD);
        let end = Ending::default();
        let producer = Producer {
            gov: self.gov.clone(),
            call: call.clone(),
            sql: sql.to_string(),
            scope,
            limits: self.limits.clone(),
            deadline,
            end: end.clone(),
        };
        let slots = self.pool.slots.clone();
        self.pool.handle().spawn(async move {
            let _in_flight = in_flight;
            let slot = tokio::time::timeout_at(deadline, slots.acquire_owned()).await;
            let Ok(slot) = slot else {
                producer.refuse(start_tx, SqlError::Timeout(producer.limits.timeout));
                return;
            };
            let _slot = slot.expect("the slots are never closed");
            producer.run(ctx, params, start_tx, rest_tx).await;
        });
        match start_rx.await {
            Ok(Ok((schema, held))) => Ok(ResultStream {
                schema,
                held: held.into(),
                rest: Some(rest_rx),
                end,
                _stop: stop,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SqlError::Execution(
                "the statement's task ended without an answer".into(),
            )),
        }
    }
}

/// What must hold before a statement runs: a read, a place among the department's
/// statements, a context.
fn check_ready(
    engine: &SqlEngine,
    sql: &str,
    scope: &Arc<governed::QueryScope>,
    flag: &cancel::CancelFlag,
) -> Result<
    (
        Option<crate::InFlight>,
        datafusion::execution::context::SessionContext,
    ),
    SqlError,
> {
    crate::check_read_only(sql)?;
    let in_flight = engine.in_flight(&scope.reader)?;
    let ctx = engine.context(scope.clone(), flag)?;
    Ok((in_flight, ctx))
}

/// The statement's side: plans, runs, records and hands out.
struct Producer {
    gov: Option<Arc<citybrain_gov::Gov>>,
    call: DataCall,
    sql: String,
    scope: Arc<governed::QueryScope>,
    limits: SqlLimits,
    deadline: Instant,
    end: Ending,
}

/// How a streamed result ended.
enum End {
    Done,
    Failed(SqlError),
    /// The reader dropped its stream.
    Gone,
}

impl Producer {
    fn touched(&self) -> crate::Touched {
        self.scope.touched.lock().expect("touched lock").clone()
    }

    /// Records a refusal before anything was handed out and tells the caller.
    fn refuse(&self, start: oneshot::Sender<Start>, error: SqlError) {
        let recorded = audit(
            self.gov.as_deref(),
            &self.call,
            &self.sql,
            &self.touched(),
            Err(&error),
            None,
        );
        let _ = start.send(Err(recorded.err().unwrap_or(error)));
    }

    async fn run(
        self,
        ctx: datafusion::execution::context::SessionContext,
        params: Vec<ScalarValue>,
        start: oneshot::Sender<Start>,
        rest: mpsc::Sender<RecordBatch>,
    ) {
        let limits = &self.limits;
        let planned = tokio::time::timeout_at(self.deadline, async {
            let mut plan = crate::plan_statement(&ctx, limits, &self.sql).await?;
            if !params.is_empty() {
                plan = plan
                    .with_param_values(params)
                    .map_err(|e| crate::classify(e, limits))?;
            }
            let frame = ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| crate::classify(e, limits))?;
            let schema = frame.schema().as_arrow().clone();
            let stream = frame
                .execute_stream()
                .await
                .map_err(|e| crate::classify(e, limits))?;
            Ok::<_, SqlError>((schema, stream))
        })
        .await;
        let (schema, mut stream) = match planned {
            Ok(Ok(planned)) => planned,
            Ok(Err(e)) => return self.refuse(start, e),
            Err(_) => return self.refuse(start, SqlError::Timeout(limits.timeout)),
        };
        let schema = table::plain_schema(&schema);
        let mut count = Count::default();
        // Operators like a cross join emit a few rows per batch; the reader gets batches
        // of HOLD_ROWS rows (the last one shorter), so handing one over costs little.
        let mut coalescer = BatchCoalescer::new(schema.clone(), HOLD_ROWS);
        let mut ended = false;
        let mut next = async || -> Option<Result<RecordBatch, SqlError>> {
            loop {
                if let Some(batch) = coalescer.next_completed_batch() {
                    return Some(Ok(batch));
                }
                if ended {
                    return None;
                }
                let batch = match tokio::time::timeout_at(self.deadline, stream.next()).await {
                    Err(_) => return Some(Err(SqlError::Timeout(limits.timeout))),
                    Ok(Some(Err(e))) => return Some(Err(crate::classify(e, limits))),
                    Ok(Some(Ok(batch))) => batch,
                    Ok(None) => {
                        ended = true;
                        if let Err(e) = coalescer.finish_buffered_batch() {
                            return Some(Err(execution(e)));
                        }
                        continue;
                    }
                };
                let pushed = count
                    .add(&batch, limits)
                    .and_then(|()| table::cast_to(&batch, &schema).map_err(execution))
                    .and_then(|batch| coalescer.push_batch(batch).map_err(execution));
                if let Err(e) = pushed {
                    return Some(Err(e));
                }
            }
        };
        // Hold the start of the result.
        let mut held = Vec::new();
        let mut held_rows = 0;
        let complete = loop {
            match next().await {
                None => break true,
                Some(Err(e)) => return self.refuse(start, e),
                Some(Ok(batch)) => {
                    held_rows += batch.num_rows();
                    held.push(batch);
                    if held_rows >= HOLD_ROWS {
                        break false;
                    }
                }
            }
        };
        let touched = self.touched();
        if complete {
            let recorded = audit(
                self.gov.as_deref(),
                &self.call,
                &self.sql,
                &touched,
                Ok(held_rows as u64),
                None,
            );
            *self.end.lock().expect("end lock") = Some(Ok(()));
            let _ = start.send(recorded.map(|_| (schema.clone(), held)));
            return;
        }
        let note = format!(
            "streamed: {held_rows} rows when recorded; a record that closes this call gives the total"
        );
        let opened = match audit(
            self.gov.as_deref(),
            &self.call,
            &self.sql,
            &touched,
            Ok(held_rows as u64),
            Some((&note, None)),
        ) {
            Ok(seq) => seq,
            Err(e) => {
                let _ = start.send(Err(e));
                return;
            }
        };
        let mut sent = held_rows as u64;
        let end = if start.send(Ok((schema.clone(), held))).is_err() {
            End::Gone
        } else {
            loop {
                match next().await {
                    None => break End::Done,
                    // A reader that went away sets the cancel flag: its operators end so.
                    Some(Err(_)) if rest.is_closed() => break End::Gone,
                    Some(Err(e)) => break End::Failed(e),
                    Some(Ok(batch)) => {
                        let rows = batch.num_rows() as u64;
                        match tokio::time::timeout_at(self.deadline, rest.send(batch)).await {
                            Ok(Ok(())) => sent += rows,
                            Ok(Err(_)) => break End::Gone,
                            Err(_) => break End::Failed(SqlError::Timeout(limits.timeout)),
                        }
                    }
                }
            }
        };
        // The statement's operators end before the closing record is written.
        drop(stream);
        let (outcome, note) = match &end {
            End::Done => (Ok(sent), format!("the streamed result ended: {sent} rows")),
            End::Failed(e) => (
                Err(e),
                format!("the streamed result failed after {sent} rows"),
            ),
            End::Gone => (
                Ok(sent),
                format!("the reader stopped reading after {sent} rows"),
            ),
        };
        let closed = audit(
            self.gov.as_deref(),
            &self.call,
            &self.sql,
            &touched,
            outcome,
            Some((&note, opened)),
        );
        // Before the channel closes (`rest` is dropped on return): the reader sees the
        // failure, not a clean end of its result.
        *self.end.lock().expect("end lock") = Some(match (end, closed) {
            (_, Err(e)) | (End::Failed(e), Ok(_)) => Err(e),
            (End::Done | End::Gone, Ok(_)) => Ok(()),
        });
    }
}

/// Rows and bytes produced so far, against the result limits.
#[derive(Default)]
pub(crate) struct Count {
    rows: usize,
    bytes: usize,
}

impl Count {
    pub(crate) fn add(&mut self, batch: &RecordBatch, limits: &SqlLimits) -> Result<(), SqlError> {
        self.rows += batch.num_rows();
        self.bytes += batch_bytes(batch);
        if self.rows > limits.max_result_rows {
            return Err(SqlError::ResultTooLarge {
                limit: format!("{} rows", limits.max_result_rows),
            });
        }
        if self.bytes > limits.max_result_bytes {
            return Err(SqlError::ResultTooLarge {
                limit: format!("{} bytes", limits.max_result_bytes),
            });
        }
        Ok(())
    }
}

fn execution(e: impl std::fmt::Display) -> SqlError {
    SqlError::Execution(e.to_string())
}
