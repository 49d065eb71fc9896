//! The row loops the hot operations run as: rounding, quotient comparisons by
//! cross-multiplication, and comparisons, each shaped so the compiler can vectorise it.

use super::node::{Cmp, Round};
use super::values::{BlockValues, values};

/// `n / d` (d > 0) rounded to a whole number, in the integer type named: i128 for
/// quotients, i64 for decimals (where the division by a constant becomes a multiplication).
macro_rules! rounding {
    ($name:ident, $t:ty) => {
        #[inline(always)]
        pub(super) fn $name(n: $t, d: $t, how: Round) -> $t {
            let floor = n.div_euclid(d);
            let rest = n.rem_euclid(d);
            match how {
                Round::Down => floor,
                Round::Up => floor + <$t>::from(rest != 0),
                Round::HalfEven => match (rest * 2).cmp(&d) {
                    std::cmp::Ordering::Less => floor,
                    std::cmp::Ordering::Greater => floor + 1,
                    std::cmp::Ordering::Equal => floor + floor.rem_euclid(2),
                },
            }
        }
    };
}
rounding!(round_div, i128);
rounding!(round_by, i64);

/// Per row, `p·nm OP r·q·cm` with both sides times the sign of `q` (so a negative divisor
/// turns the comparison round): `p / q OP r` cross-multiplied, in `T` (i64 or i128), where
/// the value ranges prove every product fits.
#[inline(always)]
pub(super) fn cross_compare<T>(
    op: Cmp,
    out: &mut [i64],
    xs: &[i64],
    ys: &[i64],
    z: &BlockValues<'_>,
    nm: T,
    cm: T,
) where
    T: Copy + Ord + From<i64> + std::ops::Mul<Output = T>,
{
    #[inline(always)]
    fn go<T: Copy + From<i64> + std::ops::Mul<Output = T>>(
        out: &mut [i64],
        xs: &[i64],
        ys: &[i64],
        z: &BlockValues<'_>,
        nm: T,
        cm: T,
        test: impl Fn(T, T) -> bool,
    ) {
        match z {
            // Only in i64, where `c·cm` is proven to fit by itself.
            BlockValues::Const(c) => {
                let zc = T::from(*c) * cm;
                for ((o, p), q) in out.iter_mut().zip(xs).zip(ys) {
                    let sign = T::from((*q >> 63) | 1);
                    *o = i64::from(test(T::from(*p) * nm * sign, zc * T::from(*q) * sign));
                }
            }
            z => {
                for (((o, p), q), r) in out.iter_mut().zip(xs).zip(ys).zip(values(z)) {
                    let sign = T::from((*q >> 63) | 1);
                    let rr = T::from(*r) * T::from(*q) * cm * sign;
                    *o = i64::from(test(T::from(*p) * nm * sign, rr));
                }
            }
        }
    }
    match op {
        Cmp::Eq => go(out, xs, ys, z, nm, cm, |a, b| a == b),
        Cmp::Ne => go(out, xs, ys, z, nm, cm, |a, b| a != b),
        Cmp::Lt => go(out, xs, ys, z, nm, cm, |a, b| a < b),
        Cmp::Le => go(out, xs, ys, z, nm, cm, |a, b| a <= b),
        Cmp::Gt => go(out, xs, ys, z, nm, cm, |a, b| a > b),
        Cmp::Ge => go(out, xs, ys, z, nm, cm, |a, b| a >= b),
    }
}

/// `out[i] = test(x[i], y[i])` as 0 or 1 (not both constant).
#[inline(always)]
pub(super) fn compare(
    x: &BlockValues<'_>,
    y: &BlockValues<'_>,
    out: &mut [i64],
    test: impl Fn(i64, i64) -> bool,
) {
    match (x, y) {
        (BlockValues::Const(a), y) => {
            let ys = values(y);
            for (o, b) in out.iter_mut().zip(ys) {
                *o = i64::from(test(*a, *b));
            }
        }
        (x, BlockValues::Const(b)) => {
            let xs = values(x);
            for (o, a) in out.iter_mut().zip(xs) {
                *o = i64::from(test(*a, *b));
            }
        }
        (x, y) => {
            for ((o, a), b) in out.iter_mut().zip(values(x)).zip(values(y)) {
                *o = i64::from(test(*a, *b));
            }
        }
    }
}
