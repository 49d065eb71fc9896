//! A node's values over a block ([`BlockValues`], with flags in [`Evaluated`]) and the
//! reusable buffers they live in ([`Pool`]), memoised values included.

/// A value per row of a block, or one for all rows.
pub(super) enum BlockValues<'a> {
    Const(i64),
    Slice(&'a [i64]),
    Buf(Vec<i64>),
}

impl BlockValues<'_> {
    #[inline(always)]
    pub(super) fn at(&self, i: usize) -> i64 {
        match self {
            BlockValues::Const(c) => *c,
            BlockValues::Slice(s) => s[i],
            BlockValues::Buf(b) => b[i],
        }
    }
}

/// Values and, where any row was flagged, the flags.
pub(super) struct Evaluated<'a> {
    pub(super) values: BlockValues<'a>,
    pub(super) flags: Option<Vec<bool>>,
}

/// Reusable buffers, so a block allocates nothing once warm.
#[derive(Default)]
pub(super) struct Pool {
    pub(super) vals: Vec<Vec<i64>>,
    pub(super) flags: Vec<Vec<bool>>,
    /// Per [`Node::Memo`](super::node::Node::Memo) id, its values over the whole of one block.
    pub(super) memo: Vec<MemoSlot>,
}

#[derive(Default)]
pub(super) struct MemoSlot {
    /// The block's first row + 1 (0: nothing yet).
    pub(super) block: usize,
    /// The value for every row, when it is the same for all.
    pub(super) constant: Option<i64>,
    pub(super) vals: Vec<i64>,
    pub(super) flags: Option<Vec<bool>>,
}

impl Pool {
    /// A buffer of `n` values, not cleared: every operation writes each row it yields
    /// (a flagged row's value is never read).
    pub(super) fn vals(&mut self, n: usize) -> Vec<i64> {
        let mut v = self.vals.pop().unwrap_or_default();
        v.resize(n, 0);
        v
    }
    pub(super) fn flags(&mut self, n: usize) -> Vec<bool> {
        let mut v = self.flags.pop().unwrap_or_default();
        v.clear();
        v.resize(n, false);
        v
    }
    pub(super) fn give(&mut self, r: Evaluated<'_>) {
        if let BlockValues::Buf(b) = r.values {
            self.vals.push(b);
        }
        if let Some(f) = r.flags {
            self.flags.push(f);
        }
    }
    pub(super) fn give_flags(&mut self, f: Option<Vec<bool>>) {
        if let Some(f) = f {
            self.flags.push(f);
        }
    }
    /// Flags of either side.
    pub(super) fn union(
        &mut self,
        a: Option<Vec<bool>>,
        b: Option<Vec<bool>>,
    ) -> Option<Vec<bool>> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(mut x), Some(y)) => {
                x.iter_mut().zip(&y).for_each(|(p, q)| *p |= *q);
                self.flags.push(y);
                Some(x)
            }
        }
    }
}

/// A non-constant value's rows.
pub(super) fn values<'v>(v: &'v BlockValues<'_>) -> &'v [i64] {
    match v {
        BlockValues::Slice(s) => s,
        BlockValues::Buf(b) => b,
        BlockValues::Const(_) => &[],
    }
}

/// `v`'s values for the eligible rows, into `out`: the rows `sel` of a whole block's values,
/// or (no `sel`) the values as they come, already one per eligible row.
pub(super) fn pick(v: &BlockValues<'_>, sel: Option<&[u32]>, out: &mut [i64]) {
    match (v, sel) {
        (BlockValues::Const(c), _) => out.fill(*c),
        (v, Some(sel)) => {
            let xs = values(v);
            out.iter_mut()
                .zip(sel)
                .for_each(|(o, j)| *o = xs[*j as usize]);
        }
        (v, None) => out.copy_from_slice(&values(v)[..out.len()]),
    }
}
