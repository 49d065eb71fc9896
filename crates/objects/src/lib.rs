//! Sealed segments in object storage (issue 25, item 1): [`S3Segments`] implements the
//! hub's [`SegmentStore`] over the S3 API with the `object_store` crate, the same client
//! DataFusion reads with. A seal's segments are uploaded once; every node's query engine
//! then reads them in place (`s3://bucket/prefix/key`, the footer and the column chunks a
//! query needs, by range), with [`S3Segments::engine_store`] registered in its runtime.
//!
//! The hub is synchronous; this crate runs the async client on a runtime of its own (one
//! worker) and hands results back over a channel, as `citybrain-jetstream` does.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use citybrain_hub::cluster::{SegmentStore, check_segment_key};
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, PutOptions, PutPayload};

/// The client's store, as the query engine registers it.
pub use object_store::ObjectStore;

/// Where the segments go (`[segments] backend = "s3"` of `citybrain up --config`).
#[derive(Clone)]
pub struct Settings {
    /// The S3 endpoint (`http://10.0.0.7:9000`); None: AWS's, from the region.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Keys start with it (`citybrain/`); empty: at the bucket's root.
    pub prefix: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// How long one request may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never shows.
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Sealed segments in an S3 bucket.
pub struct S3Segments {
    settings: Settings,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Segments")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl S3Segments {
    /// Builds the client and checks that the bucket answers, saying what to do when not.
    pub fn connect(settings: Settings) -> io::Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(settings.timeout)
                    .with_allow_http(true),
            );
        if let Some(endpoint) = &settings.endpoint {
            // Path-style requests (`endpoint/bucket/key`), which S3-compatible servers take.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|e| io::Error::other(format!("[segments] S3 settings: {e}")))?,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("objects")
            .enable_all()
            .build()?;
        let segments = Self {
            settings,
            store,
            runtime,
        };
        // One listing: a wrong endpoint, bucket or key fails here, at start, not at the
        // first seal.
        let store = segments.store.clone();
        let probe = segments.key_path("");
        segments
            .run(async move {
                let mut listing = store.list(Some(&probe));
                match listing.next().await {
                    Some(Err(e)) => Err(e),
                    _ => Ok(()),
                }
            })
            .map_err(|e| {
                io::Error::other(format!(
                    "{} does not answer: {e} (does the bucket exist, and do the keys in [segments] reach it?)",
                    segments.describe()
                ))
            })?;
        Ok(segments)
    }

    /// The store and its URL (`s3://bucket`) for the query engine's runtime, so that it
    /// reads the locations this store hands out.
    pub fn engine_store(&self) -> (String, Arc<dyn ObjectStore>) {
        (format!("s3://{}", self.settings.bucket), self.store.clone())
    }

    fn key_path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.settings.prefix))
    }

    /// Runs `future` on the store's runtime and waits for it from this (any) thread.
    fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .expect("the store's runtime runs while the store exists")
    }
}

impl SegmentStore for S3Segments {
    fn put(&self, key: &str, from: &Path) -> io::Result<()> {
        check_segment_key(key)?;
        // A segment is at most a seal's rows of one day (tens of MB): one request.
        let bytes = std::fs::read(from)?;
        let path = self.key_path(key);
        let store = self.store.clone();
        self.run(async move {
            store
                .put_opts(&path, PutPayload::from(bytes), PutOptions::default())
                .await
        })
        .map(|_| ())
        .map_err(|e| io::Error::other(format!("uploading {key}: {e}")))
    }

    fn location(&self, key: &str) -> io::Result<String> {
        check_segment_key(key)?;
        Ok(format!(
            "s3://{}/{}",
            self.settings.bucket,
            self.key_path(key)
        ))
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        check_segment_key(key)?;
        let path = self.key_path(key);
        let store = self.store.clone();
        self.run(async move {
            let head = object_store::GetOptions::new().with_head(true);
            match store.get_opts(&path, head).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| io::Error::other(format!("looking for {key}: {e}")))
    }

    fn read(&self, key: &str) -> io::Result<bytes::Bytes> {
        check_segment_key(key)?;
        let path = self.key_path(key);
        let store = self.store.clone();
        self.run(async move {
            store
                .get_opts(&path, object_store::GetOptions::default())
                .await?
                .bytes()
                .await
        })
        .map_err(|e| io::Error::other(format!("reading {key}: {e}")))
    }

    fn remove_prefix(&self, prefix: &str) -> io::Result<()> {
        let prefix = prefix.trim_end_matches('/');
        check_segment_key(prefix)?;
        let path = self.key_path(prefix);
        let store = self.store.clone();
        self.run(async move {
            let keys = store
                .list(Some(&path))
                .map(|meta| meta.map(|m| m.location))
                .boxed();
            let mut deleted = store.delete_stream(keys);
            while let Some(done) = deleted.next().await {
                done?;
            }
            Ok::<_, object_store::Error>(())
        })
        .map_err(|e| io::Error::other(format!("removing {prefix}: {e}")))
    }

    fn describe(&self) -> String {
        format!(
            "S3 bucket {} at {}{}",
            self.settings.bucket,
            self.settings.endpoint.as_deref().unwrap_or("AWS"),
            if self.settings.prefix.is_empty() {
                String::new()
            } else {
                format!(", keys under {}", self.settings.prefix)
            }
        )
    }
}
