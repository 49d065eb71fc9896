//! What the columns' actual value ranges prove about a compiled node: the interval of its
//! values, whether its arithmetic can overflow, whether a quotient's divisor can be zero
//! where its result is used. Proven nodes are marked to run without checks.

use super::node::{Arith, ArithCheck, Cmp, FracCheck, Node, Place, children_mut};
use super::table::Table;

/// What the values of a node can be, from the columns' actual ranges: `None` when unknown
/// or beyond i128. Sound for any rows of the table (a selection only narrows it).
pub(super) fn interval(node: &Node, table: &Table) -> Option<(i128, i128)> {
    let both = |a: &Node, b: &Node| Some((interval(a, table)?, interval(b, table)?));
    Some(match node {
        Node::Col(i) => {
            let (lo, hi) = table.cols[*i].range;
            (i128::from(lo), i128::from(hi))
        }
        Node::Const(c) => (i128::from(*c), i128::from(*c)),
        Node::Neg(x) => {
            let (lo, hi) = interval(x, table)?;
            (-hi, -lo)
        }
        Node::Not(_) | Node::Logic(..) | Node::Cmp(..) | Node::CmpFrac { .. } => (0, 1),
        Node::Scale(x, m) => {
            let (lo, hi) = interval(x, table)?;
            let m = i128::from(*m);
            (lo.checked_mul(m)?, hi.checked_mul(m)?)
        }
        Node::Arith(op, a, b, _) => {
            let ((al, ah), (bl, bh)) = both(a, b)?;
            match op {
                Arith::Add => (al.checked_add(bl)?, ah.checked_add(bh)?),
                Arith::Sub => (al.checked_sub(bh)?, ah.checked_sub(bl)?),
                Arith::Mul => {
                    let p = [
                        al.checked_mul(bl)?,
                        al.checked_mul(bh)?,
                        ah.checked_mul(bl)?,
                        ah.checked_mul(bh)?,
                    ];
                    (*p.iter().min()?, *p.iter().max()?)
                }
            }
        }
        Node::DateDiff(a, b) => {
            let ((al, ah), (bl, bh)) = both(a, b)?;
            (al - bh, ah - bl)
        }
        Node::MinMax(_, xs) => {
            let mut out = interval(&xs[0], table)?;
            for x in &xs[1..] {
                let (lo, hi) = interval(x, table)?;
                out = (out.0.min(lo), out.1.max(hi));
            }
            out
        }
        Node::Round(_, x, den) => {
            let (lo, hi) = interval(x, table)?;
            let d = i128::from(*den);
            (lo.div_euclid(d), hi.div_euclid(d) + 1)
        }
        Node::If(_, a, b) => {
            let ((al, ah), (bl, bh)) = both(a, b)?;
            (al.min(bl), ah.max(bh))
        }
        Node::Memo(_, x) => interval(x, table)?,
        _ => return None,
    })
}

/// The node an `if` condition proves is not zero in its `then` branch (`d > 0`, `d != 0`,
/// `0 < d`).
pub(super) fn nonzero_by(condition: &Node) -> Option<Node> {
    match condition {
        Node::Cmp(Cmp::Gt | Cmp::Ne, d, z) if **z == Node::Const(0) => Some((**d).clone()),
        Node::Cmp(Cmp::Lt | Cmp::Ne, z, d) if **z == Node::Const(0) => Some((**d).clone()),
        _ => None,
    }
}

/// Marks the quotient comparisons that [`may_flag`] proves cannot fail where their result
/// is used (a zero divisor only in rows an enclosing `if` discards), so they run unchecked.
pub(super) fn mark_safe(node: &mut Node, table: &Table, nonzero: &mut Vec<Node>) {
    if matches!(node, Node::CmpFrac { f, .. } if matches!(**f, Node::Frac(..))) {
        let ok = !may_flag(node, table, nonzero);
        let narrow = ok && cross_fits_i64(node, table);
        if let Node::CmpFrac { check, .. } = node {
            *check = match (ok, narrow) {
                (false, _) => FracCheck::Checked,
                (true, false) => FracCheck::Wide,
                (true, true) => FracCheck::Narrow,
            };
        }
        return;
    }
    match node {
        Node::If(c, a, b) => {
            mark_safe(c, table, nonzero);
            mark_safe(b, table, nonzero);
            let guard = nonzero_by(c);
            let pushed = guard.is_some();
            nonzero.extend(guard);
            mark_safe(a, table, nonzero);
            if pushed {
                nonzero.pop();
            }
        }
        Node::Not(x) | Node::Neg(x) | Node::Scale(x, _) | Node::Round(_, x, _) => {
            mark_safe(x, table, nonzero)
        }
        Node::Logic(_, a, b)
        | Node::Arith(_, a, b, _)
        | Node::Cmp(_, a, b)
        | Node::DateDiff(a, b)
        | Node::DateShift(_, a, b, _)
        | Node::Frac(a, b) => {
            mark_safe(a, table, nonzero);
            mark_safe(b, table, nonzero);
        }
        Node::MinMax(_, xs) => xs.iter_mut().for_each(|x| mark_safe(x, table, nonzero)),
        Node::Memo(_, x) => mark_safe(x, table, nonzero),
        _ => {}
    }
}

/// Whether both sides of a quotient comparison's cross-multiplication fit i64 in every row
/// (with room to change their sign), by the value ranges.
pub(super) fn cross_fits_i64(node: &Node, table: &Table) -> bool {
    let Node::CmpFrac {
        f,
        c,
        n_mul,
        cd_mul,
        ..
    } = node
    else {
        return false;
    };
    let Node::Frac(num, den) = &**f else {
        return false;
    };
    let abs = |r: (i128, i128)| r.0.unsigned_abs().max(r.1.unsigned_abs());
    let limit = i64::MAX as u128;
    match (
        interval(num, table),
        interval(den, table),
        interval(c, table),
    ) {
        (Some(n), Some(d), Some(cc)) => {
            let cm = abs(cc).checked_mul(cd_mul.unsigned_abs());
            abs(n)
                .checked_mul(n_mul.unsigned_abs())
                .is_some_and(|v| v < limit)
                && cm.is_some_and(|v| v < limit)
                && cm
                    .and_then(|v| v.checked_mul(abs(d)))
                    .is_some_and(|v| v < limit)
        }
        _ => false,
    }
}

/// Marks the arithmetic in `node` whose value ranges prove it cannot overflow.
pub(super) fn mark_total(node: &mut Node, table: &Table) {
    children_mut(node, Place::Value, &mut |c, _| mark_total(c, table));
    let fits = matches!(node, Node::Arith(..)) && fits_i64(interval(node, table));
    if let Node::Arith(_, _, _, check) = node {
        *check = if fits {
            ArithCheck::Unchecked
        } else {
            ArithCheck::Checked
        };
    }
}

pub(super) fn fits_i64(r: Option<(i128, i128)>) -> bool {
    r.is_some_and(|(lo, hi)| lo >= i128::from(i64::MIN) && hi <= i128::from(i64::MAX))
}

/// Whether evaluating `node` may flag a row (an overflow, a zero divisor), over `table`.
/// `nonzero` holds the nodes an enclosing `if` has checked to be above (or not) zero, so a
/// guarded division (`if n > 0 then x / n else ...`) is known not to fail.
pub(super) fn may_flag(node: &Node, table: &Table, nonzero: &mut Vec<Node>) -> bool {
    let mut rec = |n: &Node| may_flag(n, table, nonzero);
    match node {
        Node::Col(_) | Node::Const(_) => false,
        Node::Not(x) | Node::Memo(_, x) => rec(x),
        Node::Logic(_, a, b) | Node::Cmp(_, a, b) | Node::DateDiff(a, b) => rec(a) || rec(b),
        Node::MinMax(_, xs) => xs.iter().any(rec),
        Node::Round(_, x, _) => rec(x),
        Node::Neg(_) | Node::Scale(..) | Node::Arith(..) => {
            let children = match node {
                Node::Neg(x) | Node::Scale(x, _) => rec(x),
                Node::Arith(_, a, b, _) => rec(a) || rec(b),
                _ => unreachable!(),
            };
            children || !fits_i64(interval(node, table))
        }
        Node::If(c, a, b) => {
            if rec(c) || rec(b) {
                return true;
            }
            let guard = nonzero_by(c);
            let pushed = guard.is_some();
            nonzero.extend(guard);
            let then = may_flag(a, table, nonzero);
            if pushed {
                nonzero.pop();
            }
            then
        }
        Node::CmpFrac {
            f,
            c,
            n_mul,
            cd_mul,
            ..
        } => {
            let Node::Frac(num, den) = &**f else {
                return true;
            };
            if rec(num) || rec(den) || rec(c) {
                return true;
            }
            let d_range = interval(den, table);
            let nonzero_den =
                nonzero.contains(den) || d_range.is_some_and(|(lo, hi)| lo > 0 || hi < 0);
            // Both sides of the cross-multiplication must fit i128 (the evaluator flags
            // a row where they do not).
            let abs = |r: (i128, i128)| r.0.unsigned_abs().max(r.1.unsigned_abs());
            let fits = match (interval(num, table), d_range, interval(c, table)) {
                (Some(n), Some(d), Some(cc)) => {
                    abs(n)
                        .checked_mul(n_mul.unsigned_abs())
                        .is_some_and(|v| v < i128::MAX as u128)
                        && abs(cc)
                            .checked_mul(abs(d))
                            .and_then(|v| v.checked_mul(cd_mul.unsigned_abs()))
                            .is_some_and(|v| v < i128::MAX as u128)
                }
                _ => false,
            };
            !(nonzero_den && fits)
        }
        _ => true,
    }
}
