//! The hub's log in NATS JetStream (issue 25, item 1): [`JetStreamLog`] implements the
//! hub's [`SharedLog`], so an ingest call is acknowledged only once the stream has stored
//! its frame (replicated to a quorum when the stream has R=3), and a node that dies loses
//! nothing acknowledged: its successor, or the node itself after a restart, reads the
//! unsealed frames back from the stream.
//!
//! One stream (default `CITYBRAIN`) holds every dataset's frames on the subject
//! `citybrain.log.<owner>.<dataset>`, where the owner is the node's stable id
//! (`DATA/node.json`): nodes that share a stream each read and purge only their own
//! frames, so one node's seal never purges another's unsealed records. A frame over the server's message limit is sent as chunks
//! (headers `Citybrain-Generation`, `Citybrain-Chunk: i/n`), published in order on one
//! connection; a frame whose chunks did not all arrive was never acknowledged, and reading
//! drops it. After a seal the dataset's frames through the sealed sequence are purged.
//!
//! The hub is synchronous; this crate runs the async client on a runtime of its own (one
//! worker thread) and hands results back over a channel, so it can be called from any
//! thread, a Tokio worker's included.

use std::future::Future;
use std::io;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::BytesMut;
use citybrain_hub::log::{ForeignFrame, SharedFrame, SharedLog};

/// Subjects of the log: `citybrain.log.<owner>.<dataset>`.
const SUBJECT_PREFIX: &str = "citybrain.log.";
const GENERATION: &str = "Citybrain-Generation";
const CHUNK: &str = "Citybrain-Chunk";
/// The frame a chunk belongs to: the node's id and a counter.
const FRAME: &str = "Citybrain-Frame";
/// How long one attempt at publishing waits for the stream before sending again.
const ATTEMPT: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// No frame is cut into more (256 MiB bodies in 1 MiB messages).
const MAX_CHUNKS: usize = 1 << 16;

/// A frame whose chunks are still being gathered.
struct Partial {
    generation: u64,
    count: usize,
    chunks: std::collections::BTreeMap<usize, bytes::Bytes>,
    sequence: u64,
}
/// Room left in each message for headers and the protocol.
const HEADROOM: usize = 4096;

/// Where the log is and how it is kept (`[log]` of `citybrain up --config`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The NATS servers, comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The stream's name (created if missing).
    pub stream: String,
    /// Copies JetStream keeps of every frame (3 in a cluster; 1 on one server).
    pub replicas: usize,
    /// How long an append waits for the stream's acknowledgement.
    pub timeout: Duration,
    /// The node whose log this is (its stable id, kept in its data directory): its frames'
    /// subjects start with it. Empty: `citybrain.log.<dataset>`, a single node's.
    pub owner: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "CITYBRAIN".into(),
            replicas: 1,
            timeout: Duration::from_secs(10),
            owner: String::new(),
        }
    }
}

/// The hub's log in a JetStream stream.
pub struct JetStreamLog {
    settings: Settings,
    runtime: tokio::runtime::Runtime,
    context: jetstream::Context,
    stream: stream::Stream,
    /// The largest message payload the server takes.
    max_payload: usize,
    /// This process's id in frame ids (random): message ids stay unique across restarts.
    node: String,
    frames: std::sync::atomic::AtomicU64,
    /// Per follower and dataset, other nodes' chunks of frames not yet whole
    /// ([`SharedLog::follow`]).
    following: std::sync::Mutex<std::collections::HashMap<String, Chunks>>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("url", &self.settings.url)
            .field("stream", &self.settings.stream)
            .finish_non_exhaustive()
    }
}

fn other(context: &str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> io::Error {
    let context = context.to_string();
    move |e| io::Error::other(format!("{context}: {e}"))
}

fn subject(owner: &str, dataset: &str) -> String {
    if owner.is_empty() {
        format!("{SUBJECT_PREFIX}{dataset}")
    } else {
        format!("{SUBJECT_PREFIX}{owner}.{dataset}")
    }
}

impl JetStreamLog {
    /// Connects and makes sure the stream exists with the settings' replicas. Fails with
    /// what to do when the server is not there or has no JetStream.
    pub fn connect(settings: Settings) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("jetstream")
            .enable_all()
            .build()?;
        let (client, context, stream) = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .name("citybrain")
                .connection_timeout(settings.timeout)
                .request_timeout(Some(settings.timeout))
                .retry_on_initial_connect()
                .connect(
                    settings
                        .url
                        .split(',')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .collect::<Vec<_>>(),
                )
                .await
                .map_err(|e| io::Error::other(format!("connecting to NATS at {}: {e}", settings.url)))?;
            let context = jetstream::new(client.clone());
            let config = stream::Config {
                name: settings.stream.clone(),
                subjects: vec![format!("{SUBJECT_PREFIX}>")],
                storage: stream::StorageType::File,
                num_replicas: settings.replicas,
                ..Default::default()
            };
            // A cluster that is still electing its leaders answers "temporarily
            // unavailable" for a few seconds: asked again until the timeout.
            let deadline = tokio::time::Instant::now() + settings.timeout;
            let stream = loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                // Requests sent before a meta leader exists get no answer at all: each
                // attempt waits briefly rather than the whole timeout.
                let attempt = left.min(Duration::from_secs(2));
                let error = match tokio::time::timeout(attempt, context.get_or_create_stream(config.clone())).await {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {attempt:?}"),
                };
                if tokio::time::Instant::now() + Duration::from_millis(250) >= deadline {
                    if client.connection_state() != async_nats::connection::State::Connected {
                        return Err(io::Error::other(format!(
                            "could not reach NATS at {} within {:?}: is nats-server running there (with -js)? (docs/cluster.md)",
                            settings.url, settings.timeout
                        )));
                    }
                    return Err(io::Error::other(format!(
                        "creating stream {} on {} within {:?}: {error} (is nats-server started with JetStream on, -js, and with {} servers for {} replicas?)",
                        settings.stream, settings.url, settings.timeout, settings.replicas, settings.replicas
                    )));
                }
                tracing::debug!(message = "JetStream not ready; asking again.", %error);
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            Ok::<_, io::Error>((client, context, stream))
        })?;
        let max_payload = client.server_info().max_payload;
        Ok(Self {
            settings,
            runtime,
            context,
            stream,
            max_payload,
            node: client.new_inbox().trim_start_matches("_INBOX.").to_string(),
            frames: std::sync::atomic::AtomicU64::new(0),
            following: Default::default(),
        })
    }

    /// Runs `future` on the log's runtime and waits for it from this (any) thread.
    fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .expect("the log's runtime runs while the log exists")
    }

    fn chunk_size(&self) -> usize {
        self.max_payload.saturating_sub(HEADROOM).max(HEADROOM)
    }
}

/// Chunks gathered into frames, whatever their order (a chunk sent again lands after the
/// others); a frame is whole once all its chunks are there, and an unacknowledged one may
/// never be.
#[derive(Default)]
struct Chunks {
    partial: std::collections::HashMap<String, Partial>,
}

impl Chunks {
    /// Adds one message of `subject`; the frame it completes: generation, sequence (its
    /// last chunk's) and bytes.
    fn add(
        &mut self,
        subject: &str,
        message: &jetstream::message::StreamMessage,
    ) -> Option<(u64, u64, bytes::Bytes)> {
        let sequence = message.sequence;
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_string());
        let generation: Option<u64> = header(GENERATION).and_then(|g| g.parse().ok());
        let chunk: Option<(usize, usize)> = header(CHUNK).and_then(|c| {
            let (i, n) = c.split_once('/')?;
            Some((i.parse().ok()?, n.parse().ok()?))
        });
        let (Some(generation), Some((i, n)), Some(id)) = (generation, chunk, header(FRAME)) else {
            tracing::warn!(message = "A message on the log's subject is not a citybrain frame; skipped.", subject = %subject, sequence);
            return None;
        };
        if i >= n || n > MAX_CHUNKS {
            tracing::warn!(message = "A frame's chunk header is out of range; skipped.", subject = %subject, sequence);
            return None;
        }
        let part = self.partial.entry(id.clone()).or_insert_with(|| Partial {
            generation,
            count: n,
            chunks: std::collections::BTreeMap::new(),
            sequence,
        });
        if part.count != n || part.generation != generation {
            return None;
        }
        part.sequence = part.sequence.max(sequence);
        part.chunks
            .entry(i)
            .or_insert_with(|| message.payload.clone());
        if part.chunks.len() < n {
            return None;
        }
        let part = self.partial.remove(&id).expect("present");
        let mut whole = BytesMut::new();
        for bytes in part.chunks.values() {
            whole.extend_from_slice(bytes);
        }
        Some((part.generation, part.sequence, whole.freeze()))
    }
}

/// The first message of `subject` (wildcards allowed) at sequence `from` or later, from
/// the stream's leader, so what was acknowledged is there whichever server this node is
/// connected to; None when there is none.
async fn next_message(
    stream: &stream::Stream,
    subject: &str,
    from: u64,
    timeout: Duration,
) -> io::Result<Option<jetstream::message::StreamMessage>> {
    match tokio::time::timeout(
        timeout,
        stream.get_first_raw_message_by_subject(subject, from),
    )
    .await
    {
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("reading the log: no answer within {timeout:?}"),
        )),
        Ok(Err(e)) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Ok(Err(e)) => Err(other("reading the log")(e.into())),
        Ok(Ok(message)) => Ok(Some(message)),
    }
}

impl SharedLog for JetStreamLog {
    fn append(&self, dataset: &str, generation: u64, parts: &[&[u8]]) -> io::Result<u64> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut frame = BytesMut::with_capacity(total);
        for part in parts {
            frame.extend_from_slice(part);
        }
        let frame = frame.freeze();
        let size = self.chunk_size();
        let count = frame.len().div_ceil(size).max(1);
        let id = format!(
            "{}.{}",
            self.node,
            self.frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let context = self.context.clone();
        let subject = subject(&self.settings.owner, dataset);
        let timeout = self.settings.timeout;
        self.run(async move {
            // Every chunk carries a message id: a chunk sent again (its acknowledgement
            // was lost, or the stream was electing a leader) is stored once, and the
            // stream answers with its first sequence. So failures within the timeout are
            // retried here rather than handed to the caller as a 503.
            let deadline = tokio::time::Instant::now() + timeout;
            let mut sequences: Vec<Option<u64>> = vec![None; count];
            let mut last_error = String::new();
            loop {
                let mut acks = Vec::new();
                for (i, _) in sequences.iter().enumerate().filter(|(_, s)| s.is_none()) {
                    let chunk = frame.slice(i * size..((i + 1) * size).min(frame.len()));
                    let mut headers = HeaderMap::new();
                    headers.insert(GENERATION, generation.to_string().as_str());
                    headers.insert(CHUNK, format!("{i}/{count}").as_str());
                    headers.insert(FRAME, id.as_str());
                    headers.insert("Nats-Msg-Id", format!("{id}.{i}").as_str());
                    match context
                        .publish_with_headers(subject.clone(), headers, chunk)
                        .await
                    {
                        Ok(ack) => acks.push((i, ack)),
                        Err(e) => last_error = e.to_string(),
                    }
                }
                for (i, ack) in acks {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match tokio::time::timeout(left.min(ATTEMPT), ack).await {
                        Ok(Ok(ack)) => sequences[i] = Some(ack.sequence),
                        Ok(Err(e)) => last_error = e.to_string(),
                        Err(_) => {
                            last_error =
                                format!("no acknowledgement within {:?}", left.min(ATTEMPT))
                        }
                    }
                }
                if sequences.iter().all(Option::is_some) {
                    return Ok(sequences.into_iter().flatten().max().unwrap_or(0));
                }
                if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the stream did not acknowledge within {timeout:?}: {last_error}"),
                    ));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        })
    }

    fn read(&self, dataset: &str) -> io::Result<Vec<SharedFrame>> {
        let stream = self.stream.clone();
        let subject = subject(&self.settings.owner, dataset);
        let timeout = self.settings.timeout;
        self.run(async move {
            // Message by message from the stream's leader (so what was acknowledged is
            // there, whichever server this node is connected to), the next one of the
            // subject each time: no consumer to create on a stream still electing.
            // Chunks joined by their frame's id, whatever their order (a chunk sent
            // again lands after the others); a frame is whole once all its chunks are
            // there, and an unacknowledged one may never be: it is dropped.
            let mut chunks = Chunks::default();
            let mut frames: Vec<SharedFrame> = Vec::new();
            let mut from = 1;
            while let Some(message) = next_message(&stream, &subject, from, timeout).await? {
                from = message.sequence + 1;
                if let Some((generation, sequence, frame)) = chunks.add(&subject, &message) {
                    frames.push(SharedFrame {
                        generation,
                        sequence,
                        frame,
                    });
                }
            }
            let partial = chunks.partial;
            if !partial.is_empty() {
                tracing::warn!(message = "Frames whose append was never acknowledged are incomplete in the log; dropped.", subject = %subject, frames = partial.len());
            }
            frames.sort_by_key(|f| f.sequence);
            Ok(frames)
        })
    }

    fn forget(&self, dataset: &str, through: u64) -> io::Result<()> {
        let stream = self.stream.clone();
        let subject = subject(&self.settings.owner, dataset);
        self.run(async move {
            stream
                .purge()
                .filter(subject)
                .sequence(through + 1)
                .await
                .map(|_| ())
                .map_err(|e| other("purging sealed frames")(e.into()))
        })
    }

    fn forget_all(&self, dataset: &str) -> io::Result<()> {
        let stream = self.stream.clone();
        let subject = subject(&self.settings.owner, dataset);
        self.run(async move {
            stream
                .purge()
                .filter(subject)
                .await
                .map(|_| ())
                .map_err(|e| other("purging a dataset's frames")(e.into()))
        })
    }

    fn owner(&self) -> &str {
        &self.settings.owner
    }

    fn follow(
        &self,
        follower: &str,
        dataset: &str,
        from: u64,
    ) -> io::Result<(Vec<ForeignFrame>, u64)> {
        let key = format!("{follower}/{dataset}");
        let stream = self.stream.clone();
        // `*` is one token: the owner (node ids hold no dots; dataset names may).
        let subject = format!("{SUBJECT_PREFIX}*.{dataset}");
        let own = self.settings.owner.clone();
        let timeout = self.settings.timeout;
        let chunks = std::mem::take(
            self.following
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let (result, chunks) = self.run(async move {
            let mut chunks = chunks;
            let mut frames = Vec::new();
            let mut from = from.max(1);
            loop {
                let message = match next_message(&stream, &subject, from, timeout).await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(e) => return (Err(e), chunks),
                };
                from = message.sequence + 1;
                let owner = message
                    .subject
                    .as_str()
                    .strip_prefix(SUBJECT_PREFIX)
                    .and_then(|rest| rest.split_once('.'))
                    .map(|(owner, _)| owner.to_string())
                    .unwrap_or_default();
                if owner == own {
                    continue;
                }
                if let Some((_, sequence, frame)) = chunks.add(message.subject.as_str(), &message) {
                    frames.push(ForeignFrame {
                        owner,
                        sequence,
                        frame,
                    });
                }
            }
            (Ok((frames, from)), chunks)
        });
        self.following
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, chunks);
        result
    }

    fn describe(&self) -> String {
        format!(
            "NATS JetStream {} stream {} (subjects citybrain.log.{}.*)",
            self.settings.url, self.settings.stream, self.settings.owner
        )
    }
}
