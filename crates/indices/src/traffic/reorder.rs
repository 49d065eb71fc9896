//! The reorder buffer: records held for the allowed lateness and released to the operators
//! in time order (in groups, their plate lookups started together); later ones are counted
//! and dropped.

use super::{Passage, Record, SECOND, TrafficIndices, for_each_passage};

/// Records released to the operators together (see `release`).
const RELEASE_GROUP: usize = 64;

impl TrafficIndices {
    /// Accepts one passage: late beyond the lateness → counted and dropped; otherwise held
    /// until the lateness has passed, then applied in time order (in groups of 64; a batch
    /// call, `advance_to` and `finish` apply everything due).
    pub fn push(&mut self, passage: Passage<'_>) {
        let record = Record::new(passage, &self.local);
        self.push_record(record);
    }

    /// As [`TrafficIndices::push`], for a passage already made a [`Record`].
    pub fn push_record(&mut self, record: Record) {
        let lateness = self.config.lateness_s * SECOND;
        if self.newest != i64::MIN && record.ts < self.newest - lateness || record.ts < self.clock {
            self.counters.late_dropped += 1;
            return;
        }
        match self.buffer.back() {
            Some(last) if last.ts > record.ts => {
                self.counters.reordered += 1;
                let at = self.buffer.partition_point(|r| r.ts <= record.ts);
                self.buffer.insert(at, record);
            }
            _ => self.buffer.push_back(record),
        }
        self.newest = self.newest.max(record.ts);
        let watermark = self.newest - lateness;
        // Release in groups, so the group's plate lookups can be started together.
        if self
            .buffer
            .get(RELEASE_GROUP - 1)
            .is_some_and(|r| r.ts <= watermark)
        {
            let ready = self.ready(watermark);
            self.release(ready);
        }
    }

    /// How many buffered records are due at `watermark`. A scan from the front, not a binary
    /// search: the records it passes are applied next, so it touches memory about to be used
    /// (a binary search over a lateness-worth of records missed the cache at every step).
    fn ready(&self, watermark: i64) -> usize {
        self.buffer.iter().take_while(|r| r.ts <= watermark).count()
    }

    /// Applies the first `n` buffered records. The plate table (millions of entries) misses
    /// the CPU cache on almost every lookup; touching a group's entries a group ahead lets
    /// those memory loads overlap each other and the work on the group before.
    pub(super) fn release(&mut self, n: usize) {
        let touch = |this: &Self, range: std::ops::Range<usize>| {
            for r in this.buffer.range(range) {
                this.plates.touch(r.plate);
            }
        };
        touch(self, 0..RELEASE_GROUP.min(n));
        let mut left = n;
        while left > 0 {
            let now = RELEASE_GROUP.min(left);
            touch(self, now..(2 * RELEASE_GROUP).min(left));
            for _ in 0..now {
                let record = self.buffer.pop_front().expect("n records are buffered");
                self.apply(record);
            }
            left -= now;
        }
    }

    /// Moves the stream's clock to `now` (µs) without a record, closing what ends before it.
    /// Live use calls this on a timer so quiet minutes still produce rows.
    pub fn advance_to(&mut self, now: i64) {
        let watermark = now - self.config.lateness_s * SECOND;
        let ready = self.ready(watermark);
        self.release(ready);
        self.tick(watermark);
    }

    /// Feeds an Arrow batch of passages (columns `ts`, `checkpoint_id`, `plate`, by name).
    pub fn push_batch(&mut self, batch: &arrow::array::RecordBatch) -> Result<(), String> {
        for_each_passage(batch, |p| self.push(p))?;
        self.release_due();
        Ok(())
    }

    /// Pushes records in turn, then applies whatever the lateness allows. A run of records
    /// in time order from the newest seen on (a recorded day, most live batches) joins the
    /// buffer in one copy: none of them can be late or need reordering.
    pub fn push_records(&mut self, records: &[Record]) {
        let mut rest = records;
        while let Some(first) = rest.first() {
            let mut newest = self.newest.max(self.clock);
            let run = rest
                .iter()
                .take_while(|r| {
                    let in_order = r.ts >= newest;
                    newest = r.ts;
                    in_order
                })
                .count();
            if run == 0 {
                self.push_record(*first);
                rest = &rest[1..];
                continue;
            }
            self.buffer.extend(&rest[..run]);
            self.newest = rest[run - 1].ts;
            rest = &rest[run..];
        }
        self.release_due();
    }

    /// Applies every buffered record the lateness allows, however few: what a batch call
    /// does before it returns.
    fn release_due(&mut self) {
        let watermark = self.newest - self.config.lateness_s * SECOND;
        let ready = self.ready(watermark);
        self.release(ready);
    }
}
