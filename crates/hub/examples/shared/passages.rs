//! The benchmarks' ingest bodies: `batches` NDJSON batches of 10,000 passages at 500
//! checkpoints over a day, with 100,000 plates. Shared by the hub's `ingest_bench` and
//! the JetStream crate's `log_bench`, so both measure the same work.

#[allow(dead_code)]
pub fn bodies(batches: usize) -> Vec<Vec<u8>> {
    (0..batches).map(body).collect()
}

/// Batch `b` of [`bodies`], for a benchmark that makes its bodies one at a time.
#[allow(dead_code)]
pub fn body(b: usize) -> Vec<u8> {
    (0..10_000)
        .map(|i| {
            let k = b * 10_000 + i;
            format!(
                "{{\"ts\":\"2026-11-22T{:02}:{:02}:{:02}Z\",\"checkpoint_id\":{},\"plate\":\"浙A{:05}\"}}\n",
                (k / 3600) % 24,
                (k / 60) % 60,
                k % 60,
                k % 500,
                k % 100_000
            )
        })
        .collect::<String>()
        .into_bytes()
}
