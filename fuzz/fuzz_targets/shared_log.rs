//! Frames read back from a shared log (NATS JetStream): whatever a subject holds, a node
//! decodes at start (`log::parse_frames`, Arrow IPC and Parquet bodies, the replay against
//! the dataset's schema). Whoever can publish on `citybrain.log.>` writes this input, so
//! a bad frame must be refused, never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use citybrain_hub::DatasetDef;
use citybrain_hub::log::{SharedFrame, SharedLog};
use citybrain_hub::store::DatasetStore;
use libfuzzer_sys::fuzz_target;

const DEF: &str = include_str!("../../crates/hub/tests/data/passages.toml");

#[derive(Debug)]
struct OneFrame(bytes::Bytes);

impl SharedLog for OneFrame {
    fn append(&self, _: &str, _: u64, _: &[&[u8]]) -> std::io::Result<u64> {
        Err(std::io::Error::other("read only"))
    }
    fn read(&self, _: &str) -> std::io::Result<Vec<SharedFrame>> {
        Ok(vec![SharedFrame {
            generation: 1,
            sequence: 1,
            frame: self.0.clone(),
        }])
    }
    fn forget(&self, _: &str, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn forget_all(&self, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "fuzz".into()
    }
    fn owner(&self) -> &str {
        "fuzz"
    }
    fn follow(
        &self,
        _: &str,
        _: &str,
        from: u64,
    ) -> std::io::Result<(Vec<citybrain_hub::log::ForeignFrame>, u64)> {
        Ok((Vec::new(), from))
    }
}

fn setup() -> &'static (tempfile::TempDir, DatasetDef) {
    static SETUP: OnceLock<(tempfile::TempDir, DatasetDef)> = OnceLock::new();
    SETUP.get_or_init(|| {
        (
            tempfile::tempdir().unwrap(),
            DatasetDef::from_file_text("passages.toml", DEF).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, def) = setup();
    let shared: Arc<dyn SharedLog> = Arc::new(OneFrame(bytes::Bytes::copy_from_slice(data)));
    // With a shared log the store writes no file: the same directory serves every run.
    let _ = DatasetStore::open(dir.path(), def, Some(&shared), None);
});
