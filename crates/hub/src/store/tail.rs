//! The unsealed tail of a dataset's store: its batches in memory, with their row count.

use arrow::array::RecordBatch;

/// The unsealed batches, each with the log generation that holds it, and how many rows
/// they hold, counted as batches come and go: the count is asked after every ingest, and
/// summing a tail of thousands of one-row batches (NGSI-LD creates) each time was the
/// create's busiest step in user space.
#[derive(Debug, Default)]
pub(super) struct Tail {
    pub(super) batches: Vec<(u64, RecordBatch)>,
    pub(super) rows: usize,
}

impl From<Vec<(u64, RecordBatch)>> for Tail {
    fn from(batches: Vec<(u64, RecordBatch)>) -> Self {
        let rows = batches.iter().map(|(_, b)| b.num_rows()).sum();
        Self { batches, rows }
    }
}

impl Tail {
    pub(super) fn push(&mut self, generation: u64, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.batches.push((generation, batch));
    }

    /// Drops the batches of sealed `generations`.
    pub(super) fn forget(&mut self, generations: &[u64]) {
        self.batches.retain(|(g, _)| !generations.contains(g));
        self.rows = self.batches.iter().map(|(_, b)| b.num_rows()).sum();
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, (u64, RecordBatch)> {
        self.batches.iter()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}
