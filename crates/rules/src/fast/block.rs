//! Evaluating a compiled node over a block of rows (or a selection of them): values and
//! flags per row, as the interpreter would compute them or a flag where it might differ.

use super::kernels::{compare, cross_compare, round_by, round_div};
use super::node::{Arith, ArithCheck, Cmp, Connective, Extreme, FracCheck, Node, Round, Sign};
use super::table::Table;
use super::values::{BlockValues, Evaluated, MemoSlot, Pool, values};

/// Rows `from..from + n` of the table, or, with a selection, the rows `from + sel[i]`
/// (`n` of them): nodes then see the selected rows only, in order.
pub(super) struct Block<'a, 's> {
    pub(super) table: &'a Table,
    pub(super) from: usize,
    pub(super) n: usize,
    pub(super) sel: Option<&'s [u32]>,
}

impl<'a> Block<'a, '_> {
    /// `r` with a constant spelled out per row, so loops run over plain slices.
    fn full(&self, pool: &mut Pool, r: Evaluated<'a>) -> Evaluated<'a> {
        match r.values {
            BlockValues::Const(c) => {
                let mut b = pool.vals(self.n);
                b.iter_mut().for_each(|v| *v = c);
                Evaluated {
                    values: BlockValues::Buf(b),
                    flags: r.flags,
                }
            }
            _ => r,
        }
    }

    /// Per row, `x` where `cond` (spelled out, see [`Block::full`]) holds, else `y`; a row
    /// keeps the flags of the condition and of the branch it takes, as the interpreter
    /// evaluates only that branch.
    fn choose(
        &self,
        pool: &mut Pool,
        cond: &Evaluated<'a>,
        x: Evaluated<'a>,
        y: Evaluated<'a>,
    ) -> Evaluated<'a> {
        let n = self.n;
        let x = self.full(pool, x);
        let y = self.full(pool, y);
        let mut out = pool.vals(n);
        for (((o, c), p), q) in out
            .iter_mut()
            .zip(values(&cond.values))
            .zip(values(&x.values))
            .zip(values(&y.values))
        {
            *o = if *c != 0 { *p } else { *q };
        }
        let flags = match (cond.flags.as_ref(), x.flags.as_ref(), y.flags.as_ref()) {
            (None, None, None) => None,
            (cf, xf, yf) => {
                let mut fl = pool.flags(n);
                for (i, (f, c)) in fl.iter_mut().zip(values(&cond.values)).enumerate() {
                    let taken = if *c != 0 { xf } else { yf };
                    *f = cf.is_some_and(|v| v[i]) || taken.is_some_and(|v| v[i]);
                }
                Some(fl)
            }
        };
        pool.give(x);
        pool.give(y);
        Evaluated {
            values: BlockValues::Buf(out),
            flags,
        }
    }

    /// The same block's rows `sel` (indices into the block).
    pub(super) fn select<'t>(&self, sel: &'t [u32]) -> Block<'a, 't> {
        Block {
            table: self.table,
            from: self.from,
            n: sel.len(),
            sel: Some(sel),
        }
    }

    /// Applies `f`, which cannot fail, to every row.
    fn map_total(
        &self,
        pool: &mut Pool,
        x: Evaluated<'a>,
        f: impl Fn(i64) -> i64,
    ) -> Evaluated<'a> {
        if let BlockValues::Const(c) = x.values {
            return Evaluated {
                values: BlockValues::Const(f(c)),
                flags: x.flags,
            };
        }
        let mut out = pool.vals(self.n);
        for (o, v) in out.iter_mut().zip(values(&x.values)) {
            *o = f(*v);
        }
        let flags = x.flags;
        if let BlockValues::Buf(b) = x.values {
            pool.vals.push(b);
        }
        Evaluated {
            values: BlockValues::Buf(out),
            flags,
        }
    }

    /// Applies `f` to every row; `None` flags the row.
    fn map1(
        &self,
        pool: &mut Pool,
        x: Evaluated<'a>,
        f: impl Fn(i64) -> Option<i64>,
    ) -> Evaluated<'a> {
        if let BlockValues::Const(c) = x.values
            && let Some(v) = f(c)
        {
            return Evaluated {
                values: BlockValues::Const(v),
                flags: x.flags,
            };
        }
        let mut out = pool.vals(self.n);
        let mut flags = x.flags;
        let x = self.full(
            pool,
            Evaluated {
                values: x.values,
                flags: None,
            },
        );
        let xs = values(&x.values);
        let mut bad = false;
        for (o, a) in out.iter_mut().zip(xs) {
            match f(*a) {
                Some(v) => *o = v,
                None => bad = true,
            }
        }
        if bad {
            // Rare: find the rows again and flag them.
            let fl = flags.get_or_insert_with(|| pool.flags(self.n));
            for (fl, a) in fl.iter_mut().zip(xs) {
                *fl |= f(*a).is_none();
            }
        }
        if let BlockValues::Buf(b) = x.values {
            pool.vals.push(b);
        }
        Evaluated {
            values: BlockValues::Buf(out),
            flags,
        }
    }

    fn map2(
        &self,
        pool: &mut Pool,
        x: Evaluated<'a>,
        y: Evaluated<'a>,
        f: impl Fn(i64, i64) -> Option<i64>,
    ) -> Evaluated<'a> {
        let flags = pool.union(x.flags, y.flags);
        if let (BlockValues::Const(a), BlockValues::Const(b)) = (&x.values, &y.values)
            && let Some(v) = f(*a, *b)
        {
            return Evaluated {
                values: BlockValues::Const(v),
                flags,
            };
        }
        let mut out = pool.vals(self.n);
        let mut flags = flags;
        // The common shapes get their own loops so the compiler can vectorise them.
        let mut bad = false;
        match (&x.values, &y.values) {
            (BlockValues::Const(a), y) => {
                for (o, b) in out.iter_mut().zip(values(y)) {
                    match f(*a, *b) {
                        Some(v) => *o = v,
                        None => bad = true,
                    }
                }
            }
            (x, BlockValues::Const(b)) => {
                for (o, a) in out.iter_mut().zip(values(x)) {
                    match f(*a, *b) {
                        Some(v) => *o = v,
                        None => bad = true,
                    }
                }
            }
            (x, y) => {
                for ((o, a), b) in out.iter_mut().zip(values(x)).zip(values(y)) {
                    match f(*a, *b) {
                        Some(v) => *o = v,
                        None => bad = true,
                    }
                }
            }
        }
        if bad {
            // Rare: find the rows again and flag them.
            let fl = flags.get_or_insert_with(|| pool.flags(self.n));
            for (i, fl) in fl.iter_mut().enumerate() {
                if f(x.values.at(i), y.values.at(i)).is_none() {
                    *fl = true;
                }
            }
        }
        pool.give(Evaluated {
            values: x.values,
            flags: None,
        });
        pool.give(Evaluated {
            values: y.values,
            flags: None,
        });
        Evaluated {
            values: BlockValues::Buf(out),
            flags,
        }
    }

    /// A quotient's numerator and denominator; a zero denominator flags its row (the
    /// interpreter fails at the division itself).
    fn eval_frac(&self, pool: &mut Pool, node: &Node) -> (Evaluated<'a>, Evaluated<'a>) {
        let n = self.n;
        match node {
            Node::Frac(a, b) => {
                let x = self.eval(pool, a);
                let y = self.eval(pool, b);
                let mut y = self.full(pool, y);
                if values(&y.values).contains(&0) {
                    let fl = y.flags.get_or_insert_with(|| pool.flags(n));
                    for (i, f) in fl.iter_mut().enumerate() {
                        *f |= y.values.at(i) == 0;
                    }
                }
                (x, y)
            }
            Node::If(c, a, b) => {
                let cond = self.eval(pool, c);
                let (xn, xd) = self.eval_frac(pool, a);
                let (yn, yd) = self.eval_frac(pool, b);
                let cond = self.full(pool, cond);
                let num = self.choose(pool, &cond, xn, yn);
                let den = self.choose(pool, &cond, xd, yd);
                pool.give(cond);
                (num, den)
            }
            _ => unreachable!("only quotients reach eval_frac"),
        }
    }

    pub(super) fn eval(&self, pool: &mut Pool, node: &Node) -> Evaluated<'a> {
        let n = self.n;
        match node {
            Node::Const(c) => Evaluated {
                values: BlockValues::Const(*c),
                flags: None,
            },
            Node::Col(i) => {
                let col = &self.table.cols[*i].vals[self.from..];
                match self.sel {
                    None => Evaluated {
                        values: BlockValues::Slice(&col[..n]),
                        flags: None,
                    },
                    Some(sel) => {
                        let mut out = pool.vals(n);
                        for (o, j) in out.iter_mut().zip(sel) {
                            *o = col[*j as usize];
                        }
                        Evaluated {
                            values: BlockValues::Buf(out),
                            flags: None,
                        }
                    }
                }
            }
            Node::Neg(x) => {
                let x = self.eval(pool, x);
                self.map1(pool, x, i64::checked_neg)
            }
            Node::Not(x) => {
                let x = self.eval(pool, x);
                self.map1(pool, x, |v| Some(i64::from(v == 0)))
            }
            Node::Scale(x, m) => {
                let m = *m;
                let x = self.eval(pool, x);
                self.map1(pool, x, |v| v.checked_mul(m))
            }
            Node::Arith(op, a, b, check) => {
                let (x, y) = (self.eval(pool, a), self.eval(pool, b));
                // Wrapping where proven not to overflow: the same values, but loops the
                // compiler can vectorise (a flagged child row's value is never read).
                match (op, check) {
                    (Arith::Add, ArithCheck::Checked) => self.map2(pool, x, y, i64::checked_add),
                    (Arith::Sub, ArithCheck::Checked) => self.map2(pool, x, y, i64::checked_sub),
                    (Arith::Mul, ArithCheck::Checked) => self.map2(pool, x, y, i64::checked_mul),
                    (Arith::Add, ArithCheck::Unchecked) => {
                        self.map2(pool, x, y, |a, b| Some(a.wrapping_add(b)))
                    }
                    (Arith::Sub, ArithCheck::Unchecked) => {
                        self.map2(pool, x, y, |a, b| Some(a.wrapping_sub(b)))
                    }
                    (Arith::Mul, ArithCheck::Unchecked) => {
                        self.map2(pool, x, y, |a, b| Some(a.wrapping_mul(b)))
                    }
                }
            }
            Node::Cmp(op, a, b) => {
                let (x, y) = (self.eval(pool, a), self.eval(pool, b));
                if let (BlockValues::Const(p), BlockValues::Const(q)) = (&x.values, &y.values) {
                    let v = i64::from(op.test(*p, *q));
                    let f = pool.union(x.flags, y.flags);
                    return Evaluated {
                        values: BlockValues::Const(v),
                        flags: f,
                    };
                }
                let mut out = pool.vals(n);
                // One loop per operator, so each is a plain vectorisable comparison.
                match op {
                    Cmp::Eq => compare(&x.values, &y.values, &mut out, |p, q| p == q),
                    Cmp::Ne => compare(&x.values, &y.values, &mut out, |p, q| p != q),
                    Cmp::Lt => compare(&x.values, &y.values, &mut out, |p, q| p < q),
                    Cmp::Le => compare(&x.values, &y.values, &mut out, |p, q| p <= q),
                    Cmp::Gt => compare(&x.values, &y.values, &mut out, |p, q| p > q),
                    Cmp::Ge => compare(&x.values, &y.values, &mut out, |p, q| p >= q),
                }
                let f = pool.union(x.flags, y.flags);
                pool.give(Evaluated {
                    values: x.values,
                    flags: None,
                });
                pool.give(Evaluated {
                    values: y.values,
                    flags: None,
                });
                Evaluated {
                    values: BlockValues::Buf(out),
                    flags: f,
                }
            }
            Node::DateDiff(a, b) => {
                let (x, y) = (self.eval(pool, a), self.eval(pool, b));
                self.map2(pool, x, y, i64::checked_sub)
            }
            Node::DateShift(sign, d, k, den) => {
                let (x, y) = (self.eval(pool, d), self.eval(pool, k));
                let (sign, den) = (*sign, *den);
                self.map2(pool, x, y, move |d, k| {
                    let days = k.div_euclid(den);
                    // The interpreter keeps dates as i32 days.
                    let r = match sign {
                        Sign::Plus => d.checked_add(days),
                        Sign::Minus => d.checked_sub(days),
                    }?;
                    i32::try_from(r).ok().map(i64::from)
                })
            }
            Node::MinMax(extreme, xs) => {
                let mut acc = self.eval(pool, &xs[0]);
                for x in &xs[1..] {
                    let y = self.eval(pool, x);
                    acc = match extreme {
                        Extreme::Min => self.map2(pool, acc, y, |a, b| Some(a.min(b))),
                        Extreme::Max => self.map2(pool, acc, y, |a, b| Some(a.max(b))),
                    };
                }
                acc
            }
            Node::Round(how, x, den) => {
                let (how, den) = (*how, *den);
                let x = self.eval(pool, x);
                if den == 1 {
                    return x;
                }
                // In i64: the quotient is never larger than `v`, and twice a remainder
                // below den ≤ 10^18 fits. The usual denominators and each way of rounding
                // get their own loop, so the division by a constant becomes a
                // multiplication and nothing is decided per row.
                macro_rules! by {
                    ($den:expr) => {
                        match how {
                            Round::Down => {
                                self.map_total(pool, x, |v| round_by(v, $den, Round::Down))
                            }
                            Round::Up => self.map_total(pool, x, |v| round_by(v, $den, Round::Up)),
                            Round::HalfEven => {
                                self.map_total(pool, x, |v| round_by(v, $den, Round::HalfEven))
                            }
                        }
                    };
                }
                match den {
                    10 => by!(10),
                    100 => by!(100),
                    1000 => by!(1000),
                    10000 => by!(10000),
                    _ => by!(den),
                }
            }
            Node::RoundFrac {
                how,
                f,
                n_mul,
                d_mul,
            } => {
                let (x, y) = self.eval_frac(pool, f);
                let (how, nm, dm) = (*how, *n_mul, *d_mul);
                self.map2(pool, x, y, move |p, q| {
                    if q == 0 {
                        return None;
                    }
                    let mut num = i128::from(p).checked_mul(nm)?;
                    let mut den = i128::from(q).checked_mul(dm)?;
                    if den < 0 {
                        num = num.checked_neg()?;
                        den = -den;
                    }
                    i64::try_from(round_div(num, den, how)).ok()
                })
            }
            Node::CmpFrac {
                op,
                f,
                c,
                n_mul,
                cd_mul,
                check: check @ (FracCheck::Wide | FracCheck::Narrow),
            } => {
                let Node::Frac(a, b) = &**f else {
                    unreachable!("only a plain quotient is marked safe")
                };
                let (x, y, z) = (self.eval(pool, a), self.eval(pool, b), self.eval(pool, c));
                let (x, y) = (self.full(pool, x), self.full(pool, y));
                let narrow = match (check, i64::try_from(*n_mul), i64::try_from(*cd_mul)) {
                    (FracCheck::Narrow, Ok(nm), Ok(cm)) => Some((nm, cm)),
                    _ => None,
                };
                // In i128 a constant times `cd_mul` alone need not fit (only with the
                // divisor), so it is spelled out and multiplied in the proven order.
                let z = if narrow.is_some() {
                    z
                } else {
                    self.full(pool, z)
                };
                let mut out = pool.vals(n);
                // Both sides fit (the value ranges say so); a row with a zero divisor is
                // one the guard discards.
                let (xs, ys) = (values(&x.values), values(&y.values));
                match narrow {
                    Some((nm, cm)) => cross_compare(*op, &mut out, xs, ys, &z.values, nm, cm),
                    None => cross_compare(*op, &mut out, xs, ys, &z.values, *n_mul, *cd_mul),
                }
                pool.give(x);
                pool.give(y);
                pool.give(z);
                Evaluated {
                    values: BlockValues::Buf(out),
                    flags: None,
                }
            }
            Node::CmpFrac {
                op,
                f,
                c,
                n_mul,
                cd_mul,
                check: FracCheck::Checked,
            } => {
                let (x, y) = self.eval_frac(pool, f);
                let z = self.eval(pool, c);
                let (op, nm, cm) = (*op, *n_mul, *cd_mul);
                let (x, y, z) = (self.full(pool, x), self.full(pool, y), self.full(pool, z));
                let mut flags = pool.union(x.flags, y.flags);
                flags = pool.union(flags, z.flags);
                let mut out = pool.vals(n);
                // Mostly in i64 (counts and fen times small powers of ten); i128 where
                // that overflows; a flag where even that does or the divisor is zero.
                let (nm64, cm64) = (i64::try_from(nm).ok(), i64::try_from(cm).ok());
                let slow = |p: i64, q: i64, r: i64| -> Option<bool> {
                    let l = i128::from(p).checked_mul(nm)?;
                    let rr = i128::from(r)
                        .checked_mul(i128::from(q))
                        .and_then(|v| v.checked_mul(cm))?;
                    Some(if q > 0 {
                        op.test(l, rr)
                    } else {
                        op.test(rr, l)
                    })
                };
                for (i, (((o, p), q), r)) in out
                    .iter_mut()
                    .zip(values(&x.values))
                    .zip(values(&y.values))
                    .zip(values(&z.values))
                    .enumerate()
                {
                    let (p, q, r) = (*p, *q, *r);
                    let fast = match (nm64, cm64) {
                        (Some(a), Some(b)) => p
                            .checked_mul(a)
                            .zip(r.checked_mul(q).and_then(|v| v.checked_mul(b))),
                        _ => None,
                    };
                    let held = match fast {
                        _ if q == 0 => None,
                        Some((l, rr)) => Some(if q > 0 {
                            op.test(l, rr)
                        } else {
                            op.test(rr, l)
                        }),
                        None => slow(p, q, r),
                    };
                    match held {
                        Some(h) => *o = i64::from(h),
                        None => flags.get_or_insert_with(|| pool.flags(n))[i] = true,
                    }
                }
                pool.give(Evaluated {
                    values: x.values,
                    flags: None,
                });
                pool.give(Evaluated {
                    values: y.values,
                    flags: None,
                });
                pool.give(Evaluated {
                    values: z.values,
                    flags: None,
                });
                Evaluated {
                    values: BlockValues::Buf(out),
                    flags,
                }
            }
            Node::Logic(connective, a, b) => {
                let x = self.eval(pool, a);
                let x = self.full(pool, x);
                let y = self.eval(pool, b);
                let y = self.full(pool, y);
                let and = *connective == Connective::And;
                let xv = &x.values;
                let mut out = pool.vals(n);
                let (xs, ys) = (values(&x.values), values(&y.values));
                if and {
                    for ((o, p), q) in out.iter_mut().zip(xs).zip(ys) {
                        *o = i64::from((*p != 0) & (*q != 0));
                    }
                } else {
                    for ((o, p), q) in out.iter_mut().zip(xs).zip(ys) {
                        *o = i64::from((*p != 0) | (*q != 0));
                    }
                }
                // A row keeps the right side's flag only where the left did not decide.
                let flags = match (x.flags.as_ref(), y.flags.as_ref()) {
                    (None, None) => None,
                    (xf, yf) => {
                        let mut fl = pool.flags(n);
                        for (i, f) in fl.iter_mut().enumerate() {
                            let xflag = xf.is_some_and(|v| v[i]);
                            let decided = (xv.at(i) != 0) != and;
                            *f = xflag || (!decided && yf.is_some_and(|v| v[i]));
                        }
                        Some(fl)
                    }
                };
                pool.give(x);
                pool.give(y);
                Evaluated {
                    values: BlockValues::Buf(out),
                    flags,
                }
            }
            Node::If(c, a, b) => {
                let cond = self.eval(pool, c);
                let cond = self.full(pool, cond);
                let x = self.eval(pool, a);
                let y = self.eval(pool, b);
                let r = self.choose(pool, &cond, x, y);
                pool.give(cond);
                r
            }
            Node::Frac(..) => unreachable!("a quotient is only compared or rounded"),
            Node::Memo(id, x) => {
                let key = self.from + 1;
                if pool.memo.get(*id).is_some_and(|m| m.block == key) {
                    return self.recall(pool, *id);
                }
                let r = self.eval(pool, x);
                // Only a whole block's values are kept: a selection is one policy's.
                if self.sel.is_none() {
                    if pool.memo.len() <= *id {
                        pool.memo.resize_with(*id + 1, MemoSlot::default);
                    }
                    let m = &mut pool.memo[*id];
                    m.block = key;
                    m.constant = match &r.values {
                        BlockValues::Const(c) => Some(*c),
                        v => {
                            m.vals.clear();
                            m.vals.extend_from_slice(values(v));
                            None
                        }
                    };
                    match (&r.flags, &mut m.flags) {
                        (None, kept) => *kept = None,
                        (Some(f), Some(kept)) => {
                            kept.clear();
                            kept.extend_from_slice(f);
                        }
                        (Some(f), kept) => *kept = Some(f.clone()),
                    }
                }
                r
            }
        }
    }

    /// A memoised value of this block (whole, or the selected rows).
    fn recall(&self, pool: &mut Pool, id: usize) -> Evaluated<'a> {
        let m = std::mem::take(&mut pool.memo[id]);
        let f = m.flags.as_ref().map(|kept| {
            let mut f = pool.flags(self.n);
            match self.sel {
                None => f.copy_from_slice(&kept[..self.n]),
                Some(sel) => f
                    .iter_mut()
                    .zip(sel)
                    .for_each(|(o, j)| *o = kept[*j as usize]),
            }
            f
        });
        let v = match m.constant {
            Some(c) => BlockValues::Const(c),
            None => {
                let mut out = pool.vals(self.n);
                match self.sel {
                    None => out.copy_from_slice(&m.vals[..self.n]),
                    Some(sel) => out
                        .iter_mut()
                        .zip(sel)
                        .for_each(|(o, j)| *o = m.vals[*j as usize]),
                }
                BlockValues::Buf(out)
            }
        };
        pool.memo[id] = m;
        Evaluated {
            values: v,
            flags: f,
        }
    }
}
