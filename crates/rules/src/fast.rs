//! The fast evaluator: many policies over a whole economy in one pass, for matching runs.
//!
//! Three ideas make it fast without giving up a single fen:
//! - **Fixed-point integers.** Every number a policy computes without dividing is a decimal:
//!   fen, counts, rates such as `5.5%`. Each expression node gets a scale when compiled
//!   (`5.5%` is 55 at scale 3, fen times a rate at scale 2 is fen at scale 2), so a row's
//!   value is one `i64` and add, multiply and compare are plain checked integer operations.
//!   A division is kept as a fraction and only ever compared (by cross-multiplying, with the
//!   divisor's sign) or rounded, so it stays exact too.
//! - **Blocks that stay in cache.** Rows are taken 4,096 at a time and every policy runs over
//!   the block before the next one, so the columns a block needs are read from memory once
//!   for all policies. A clause that cannot fail is skipped for a block where no row is still
//!   eligible, and so is the amount.
//! - **Shared values.** A programme's policies are mostly variants of a few templates; a value
//!   two of them compute (a layoff rate against 5.5%, insurance paid times 60%) is computed
//!   once per block and handed to both.
//! - **The exact evaluator decides the hard rows.** Any row where a fixed-point step would
//!   overflow, or a divisor is zero, is flagged instead of guessed; `and`, `or` and `if` keep
//!   a flag only on the branch a row takes, as the interpreter's short-circuits do. Flagged
//!   rows are decided by the interpreter ([`crate::eval::decide`]) one by one, and a policy the
//!   compiler does not handle runs through the batch evaluator. Either way the result is
//!   the interpreter's, exactly; a property test checks it on random rules and tables.
//!
//! Text columns are dictionary codes, so comparing a district is comparing integers.

use std::collections::HashMap;

use citybrain_core::{Date, Fen};

use crate::batch::{Column, Outcome};
use crate::eval::{self, EvalError, Ratio, Value};
use crate::syntax::{Expr, ExprKind, Lit, PolicyAst, Type};

/// Rows per block: the columns a policy reads fit in the second-level cache, and each node
/// is dispatched once per 4,096 rows. (1,024 took 14% longer over 467 policies; 16,384
/// 12% longer.)
pub const BLOCK: usize = 4096;
/// The largest scale a fixed-point value may have (10^18 fits an i64).
const MAX_SCALE: u32 = 18;
/// Rate columns are stored at this scale when every value is a decimal that fits it.
const RATE_SCALE: u32 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColKind {
    Int,
    Money,
    Rate,
    Bool,
    Date,
    Text,
}

#[derive(Debug, Clone)]
struct TCol {
    kind: ColKind,
    /// Decimal scale (rates only; everything else is whole).
    scale: u32,
    vals: Vec<i64>,
    /// Rates that are not decimals at [`RATE_SCALE`] keep their exact values (rare): policies
    /// that read them go through the batch evaluator.
    exact: Option<Vec<Ratio>>,
    /// The smallest and largest value, for proving an operation cannot overflow.
    range: (i64, i64),
}

/// The enterprises as typed integer columns (text dictionary-encoded).
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: usize,
    cols: Vec<TCol>,
    index: HashMap<String, usize>,
    codes: HashMap<String, i64>,
    words: Vec<String>,
}

/// A column whose length differs from the table's.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("column {name} has {got} rows, the table has {want}")]
pub struct LengthMismatch {
    pub name: String,
    pub got: usize,
    pub want: usize,
}

impl Table {
    pub fn new(rows: usize) -> Self {
        Self {
            rows,
            ..Self::default()
        }
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The text values, in code order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    fn push(&mut self, name: &str, mut col: TCol) -> Result<(), LengthMismatch> {
        col.range = col
            .vals
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        if col.vals.is_empty() {
            col.range = (0, 0);
        }
        let got = col.vals.len();
        if got != self.rows {
            return Err(LengthMismatch {
                name: name.into(),
                got,
                want: self.rows,
            });
        }
        self.index.insert(name.into(), self.cols.len());
        self.cols.push(col);
        Ok(())
    }

    fn plain(kind: ColKind, vals: Vec<i64>) -> TCol {
        TCol {
            kind,
            scale: 0,
            vals,
            exact: None,
            range: (0, 0),
        }
    }

    /// The code of a text value (new values get the next code).
    pub fn code(&mut self, word: &str) -> i64 {
        if let Some(c) = self.codes.get(word) {
            return *c;
        }
        let c = self.words.len() as i64;
        self.codes.insert(word.to_string(), c);
        self.words.push(word.to_string());
        c
    }

    pub fn add_int(&mut self, name: &str, vals: Vec<i64>) -> Result<(), LengthMismatch> {
        self.push(name, Self::plain(ColKind::Int, vals))
    }
    /// Money in fen.
    pub fn add_money(&mut self, name: &str, vals: Vec<i64>) -> Result<(), LengthMismatch> {
        self.push(name, Self::plain(ColKind::Money, vals))
    }
    pub fn add_bool(&mut self, name: &str, vals: Vec<bool>) -> Result<(), LengthMismatch> {
        let v = vals.into_iter().map(i64::from).collect();
        self.push(name, Self::plain(ColKind::Bool, v))
    }
    /// Days since 1970-01-01.
    pub fn add_date(&mut self, name: &str, vals: Vec<i32>) -> Result<(), LengthMismatch> {
        let v = vals.into_iter().map(i64::from).collect();
        self.push(name, Self::plain(ColKind::Date, v))
    }
    /// Text already encoded with [`Table::code`].
    pub fn add_text_codes(&mut self, name: &str, codes: Vec<i64>) -> Result<(), LengthMismatch> {
        self.push(name, Self::plain(ColKind::Text, codes))
    }
    pub fn add_text(&mut self, name: &str, vals: &[String]) -> Result<(), LengthMismatch> {
        let codes = vals.iter().map(|w| self.code(w)).collect();
        self.add_text_codes(name, codes)
    }
    pub fn add_rate(&mut self, name: &str, vals: Vec<Ratio>) -> Result<(), LengthMismatch> {
        let p = 10i128.pow(RATE_SCALE);
        let fixed: Option<Vec<i64>> = vals
            .iter()
            .map(|r| {
                let scaled = r.num.checked_mul(p)?;
                (scaled % r.den == 0)
                    .then(|| i64::try_from(scaled / r.den).ok())
                    .flatten()
            })
            .collect();
        let col = match fixed {
            Some(v) => TCol {
                kind: ColKind::Rate,
                scale: RATE_SCALE,
                vals: v,
                exact: None,
                range: (0, 0),
            },
            None => TCol {
                kind: ColKind::Rate,
                scale: RATE_SCALE,
                vals: vec![0; vals.len()],
                exact: Some(vals),
                range: (0, 0),
            },
        };
        self.push(name, col)
    }

    /// A table from the batch evaluator's columns.
    pub fn from_columns(columns: &HashMap<String, Column>) -> Result<Self, LengthMismatch> {
        let rows = columns.values().next().map_or(0, Column::len);
        let mut t = Self::new(rows);
        let mut names: Vec<&String> = columns.keys().collect();
        names.sort();
        for name in names {
            match &columns[name] {
                Column::Int(v) => t.add_int(name, v.clone())?,
                Column::Money(v) => t.add_money(name, v.clone())?,
                Column::Rate(v) => t.add_rate(name, v.clone())?,
                Column::Bool(v) => t.add_bool(name, v.clone())?,
                Column::Text(v) => t.add_text(name, v)?,
                Column::Date(v) => t.add_date(name, v.clone())?,
            }
        }
        Ok(t)
    }

    /// One row's value of a column, as the interpreter takes it.
    fn value(&self, col: usize, row: usize) -> Value {
        let c = &self.cols[col];
        let v = c.vals[row];
        match c.kind {
            ColKind::Int | ColKind::Money => Value::Num(Ratio::int(i128::from(v))),
            ColKind::Rate => match &c.exact {
                Some(e) => Value::Num(e[row]),
                None => Value::Num(
                    Ratio::checked(i128::from(v), 10i128.pow(c.scale)).unwrap_or(Ratio::int(0)),
                ),
            },
            ColKind::Bool => Value::Bool(v != 0),
            ColKind::Date => Value::Date(Date(v as i32)),
            ColKind::Text => Value::Text(self.words[v as usize].clone()),
        }
    }

    /// Rows `from..to` of some columns, for the batch evaluator.
    fn slice(&self, names: &[(String, usize)], from: usize, to: usize) -> HashMap<String, Column> {
        names
            .iter()
            .map(|(name, i)| {
                let c = &self.cols[*i];
                let v = &c.vals[from..to];
                let col = match c.kind {
                    ColKind::Int => Column::Int(v.to_vec()),
                    ColKind::Money => Column::Money(v.to_vec()),
                    ColKind::Rate => Column::Rate(
                        (from..to)
                            .map(|r| match self.value(*i, r) {
                                Value::Num(x) => x,
                                _ => Ratio::int(0),
                            })
                            .collect(),
                    ),
                    ColKind::Bool => Column::Bool(v.iter().map(|x| *x != 0).collect()),
                    ColKind::Date => Column::Date(v.iter().map(|x| *x as i32).collect()),
                    ColKind::Text => {
                        Column::Text(v.iter().map(|x| self.words[*x as usize].clone()).collect())
                    }
                };
                (name.clone(), col)
            })
            .collect()
    }
}

// ---- Compiling --------------------------------------------------------------------------

/// What a compiled node yields per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    /// A decimal: the integer is the value times 10^scale.
    Num(u32),
    /// A quotient of two decimals (only compared or rounded).
    Frac(u32, u32),
    Bool,
    Date,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "==" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }
    /// `b OP' a` when `a OP b`.
    fn swap(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            x => x,
        }
    }
    #[inline(always)]
    fn test<T: Ord>(self, a: T, b: T) -> bool {
        match self {
            Self::Eq => a == b,
            Self::Ne => a != b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Round {
    Down,
    Up,
    HalfEven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Arith {
    Add,
    Sub,
    Mul,
}

/// How a quotient comparison is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FracCheck {
    /// A row whose products overflow i128, or whose divisor is zero, is flagged.
    Checked,
    /// Proven never to flag a row whose result is used; the products fit i128.
    Wide,
    /// As `Wide`, and the products fit i64 (counts against a percentage, mostly).
    Narrow,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    Col(usize),
    Const(i64),
    Neg(Box<Node>),
    Not(Box<Node>),
    /// `and` (true) or `or` (false).
    Logic(bool, Box<Node>, Box<Node>),
    /// Times a power of ten (aligning scales).
    Scale(Box<Node>, i64),
    /// The flag: proven by the value ranges (see [`mark_total`]) never to overflow, so
    /// computed without checks.
    Arith(Arith, Box<Node>, Box<Node>, bool),
    Cmp(Cmp, Box<Node>, Box<Node>),
    /// `(n / 10^sn) / (d / 10^sd)  OP  c / 10^sc`, as `n·10^(sd+sc)  OP  c·d·10^sn` with the
    /// comparison turned round when `d` is negative.
    CmpFrac {
        op: Cmp,
        /// A quotient-valued node.
        f: Box<Node>,
        c: Box<Node>,
        n_mul: i128,
        cd_mul: i128,
        /// Checked, or proven (see [`mark_safe`]) never to flag a row whose result is used.
        check: FracCheck,
    },
    MinMax(bool, Vec<Node>),
    /// Rounds `v / den` to a whole number.
    Round(Round, Box<Node>, i64),
    /// Rounds `(n·n_mul) / (d·d_mul)` to a whole number.
    RoundFrac {
        how: Round,
        f: Box<Node>,
        n_mul: i128,
        d_mul: i128,
    },
    If(Box<Node>, Box<Node>, Box<Node>),
    /// A date plus (or minus) `floor(v / den)` days.
    DateShift(bool, Box<Node>, Box<Node>, i64),
    DateDiff(Box<Node>, Box<Node>),
    /// Numerator and denominator of a division (only inside `CmpFrac` / `RoundFrac`, or an
    /// `If` of quotients inside them); a decimal taking part is over `Const(1)`.
    Frac(Box<Node>, Box<Node>),
    /// A value that more than one place in the plan computes (see [`share_subtrees`]):
    /// computed once per block, then handed out from the thread's memo.
    Memo(usize, Box<Node>),
}

/// Calls `f` on each child of `node`, with whether the child is a quotient's place (`Frac`
/// or an `If` of quotients) rather than a value.
fn children_mut(node: &mut Node, frac: bool, f: &mut impl FnMut(&mut Node, bool)) {
    match node {
        Node::Col(_) | Node::Const(_) => {}
        Node::Neg(x) | Node::Not(x) | Node::Scale(x, _) | Node::Round(_, x, _) => f(x, false),
        Node::Logic(_, a, b)
        | Node::Arith(_, a, b, _)
        | Node::Cmp(_, a, b)
        | Node::DateShift(_, a, b, _)
        | Node::DateDiff(a, b)
        | Node::Frac(a, b) => {
            f(a, false);
            f(b, false);
        }
        Node::CmpFrac { f: q, c, .. } => {
            f(q, true);
            f(c, false);
        }
        Node::RoundFrac { f: q, .. } => f(q, true),
        Node::MinMax(_, xs) => xs.iter_mut().for_each(|x| f(x, false)),
        Node::If(c, a, b) => {
            f(c, false);
            f(a, frac);
            f(b, frac);
        }
        Node::Memo(_, x) => f(x, frac),
    }
}

/// A value worth computing once for several places: two operations or more (one is as cheap
/// as copying its result).
const MEMO_COST: usize = 2;

/// Cross-policy common subexpressions: a programme's policies are mostly variants of a few
/// templates that differ in some parameters, so most of what a variant computes (a layoff
/// rate compared with 5.5%, insurance paid times 60%) another policy has computed for the
/// same block already. Every value subtree found in two places or more (of any policies) is
/// wrapped in a [`Node::Memo`] at its largest; returns how many distinct ones.
fn share_subtrees(policies: &mut [(&PolicyAst, Program, Date)]) -> usize {
    fn roots(p: &mut Program) -> Vec<&mut Node> {
        match p {
            Program::Fast {
                clauses,
                amount,
                exceptions,
                ..
            } => clauses
                .iter_mut()
                .map(|c| &mut c.0)
                .chain(amount.iter_mut())
                .chain(exceptions.iter_mut().flat_map(|(w, x)| [w, x]))
                .collect(),
            _ => Vec::new(),
        }
    }
    /// Counts the subtrees worth sharing; returns the operations in `node` (leaves are free).
    fn count(node: &mut Node, frac: bool, seen: &mut HashMap<Node, usize>) -> usize {
        let mut cost = usize::from(!matches!(node, Node::Col(_) | Node::Const(_)));
        children_mut(node, frac, &mut |c, fr| cost += count(c, fr, seen));
        if !frac && cost >= MEMO_COST {
            *seen.entry(node.clone()).or_default() += 1;
        }
        cost
    }
    fn wrap(
        node: &mut Node,
        frac: bool,
        seen: &HashMap<Node, usize>,
        ids: &mut HashMap<Node, usize>,
    ) {
        if !frac && seen.get(node).is_some_and(|n| *n >= 2) {
            let next = ids.len();
            let id = *ids.entry(node.clone()).or_insert(next);
            let inner = std::mem::replace(node, Node::Const(0));
            *node = Node::Memo(id, Box::new(inner));
            return;
        }
        children_mut(node, frac, &mut |c, fr| wrap(c, fr, seen, ids));
    }
    let mut seen = HashMap::new();
    for (_, p, _) in policies.iter_mut() {
        for r in roots(p) {
            count(r, false, &mut seen);
        }
    }
    let mut ids = HashMap::new();
    for (_, p, _) in policies.iter_mut() {
        for r in roots(p) {
            wrap(r, false, &seen, &mut ids);
        }
    }
    ids.len()
}

/// What the values of a node can be, from the columns' actual ranges: `None` when unknown
/// or beyond i128. Sound for any rows of the table (a selection only narrows it).
fn interval(node: &Node, table: &Table) -> Option<(i128, i128)> {
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
fn nonzero_by(condition: &Node) -> Option<Node> {
    match condition {
        Node::Cmp(Cmp::Gt | Cmp::Ne, d, z) if **z == Node::Const(0) => Some((**d).clone()),
        Node::Cmp(Cmp::Lt | Cmp::Ne, z, d) if **z == Node::Const(0) => Some((**d).clone()),
        _ => None,
    }
}

/// Marks the quotient comparisons that [`may_flag`] proves cannot fail where their result
/// is used (a zero divisor only in rows an enclosing `if` discards), so they run unchecked.
fn mark_safe(node: &mut Node, table: &Table, nonzero: &mut Vec<Node>) {
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
fn cross_fits_i64(node: &Node, table: &Table) -> bool {
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
fn mark_total(node: &mut Node, table: &Table) {
    children_mut(node, false, &mut |c, _| mark_total(c, table));
    let fits = matches!(node, Node::Arith(..)) && fits_i64(interval(node, table));
    if let Node::Arith(_, _, _, total) = node {
        *total = fits;
    }
}

fn fits_i64(r: Option<(i128, i128)>) -> bool {
    r.is_some_and(|(lo, hi)| lo >= i128::from(i64::MIN) && hi <= i128::from(i64::MAX))
}

/// Whether evaluating `node` may flag a row (an overflow, a zero divisor), over `table`.
/// `nonzero` holds the nodes an enclosing `if` has checked to be above (or not) zero, so a
/// guarded division (`if n > 0 then x / n else ...`) is known not to fail.
fn may_flag(node: &Node, table: &Table, nonzero: &mut Vec<Node>) -> bool {
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

/// Why a policy runs through the batch evaluator instead.
#[derive(Debug, Clone, PartialEq)]
pub struct NotCompiled(pub String);

struct Compiler<'a> {
    table: &'a Table,
    types: HashMap<&'a str, Type>,
    /// Parameters and clauses by name, already compiled.
    known: HashMap<String, (Node, K)>,
}

fn pow10(k: u32) -> Option<i64> {
    10i64.checked_pow(k)
}

fn nc<T>(why: impl Into<String>) -> Result<T, NotCompiled> {
    Err(NotCompiled(why.into()))
}

/// The smallest scale at which an exact ratio is a whole i64, if any.
fn fixed(r: Ratio) -> Option<(i64, u32)> {
    for s in 0..=MAX_SCALE {
        let scaled = r.num.checked_mul(10i128.pow(s))?;
        if scaled % r.den == 0 {
            return i64::try_from(scaled / r.den).ok().map(|v| (v, s));
        }
    }
    None
}

/// `x` times 10^k, folded when `x` is a constant.
fn scale_by(x: Node, k: u32) -> Result<Node, NotCompiled> {
    if k == 0 {
        return Ok(x);
    }
    let m = pow10(k).ok_or_else(|| NotCompiled("a scale beyond 10^18".into()))?;
    Ok(match x {
        Node::Const(c) => match c.checked_mul(m) {
            Some(v) => Node::Const(v),
            None => Node::Scale(Box::new(Node::Const(c)), m),
        },
        x => Node::Scale(Box::new(x), m),
    })
}

/// A decimal or a quotient as a quotient (a decimal over one), with its scales.
fn as_frac(x: Node, k: K) -> Result<(Node, u32, u32), NotCompiled> {
    match k {
        K::Num(s) => Ok((Node::Frac(Box::new(x), Box::new(Node::Const(1))), s, 0)),
        K::Frac(sn, sd) => Ok((x, sn, sd)),
        _ => nc("a quotient beside a value that is not a number"),
    }
}

/// A quotient-valued node with its numerator times 10^dn and denominator times 10^dd.
fn frac_rescale(x: Node, dn: u32, dd: u32) -> Result<Node, NotCompiled> {
    Ok(match x {
        Node::Frac(n, d) => Node::Frac(Box::new(scale_by(*n, dn)?), Box::new(scale_by(*d, dd)?)),
        Node::If(c, a, b) => Node::If(
            c,
            Box::new(frac_rescale(*a, dn, dd)?),
            Box::new(frac_rescale(*b, dn, dd)?),
        ),
        _ => return nc("an unexpected quotient"),
    })
}

/// Brings two decimals to one scale.
fn align(a: (Node, u32), b: (Node, u32)) -> Result<(Node, Node, u32), NotCompiled> {
    let s = a.1.max(b.1);
    Ok((scale_by(a.0, s - a.1)?, scale_by(b.0, s - b.1)?, s))
}

impl Compiler<'_> {
    fn num(&self, e: &Expr) -> Result<(Node, u32), NotCompiled> {
        match self.expr(e)? {
            (n, K::Num(s)) => Ok((n, s)),
            _ => nc("a number that is a quotient where a decimal is needed"),
        }
    }

    fn constant(v: &Value) -> Result<(Node, K), NotCompiled> {
        Ok(match v {
            Value::Num(r) => match fixed(*r) {
                Some((v, s)) => (Node::Const(v), K::Num(s)),
                None => return nc("a constant that is not a decimal"),
            },
            Value::Bool(b) => (Node::Const(i64::from(*b)), K::Bool),
            Value::Date(d) => (Node::Const(i64::from(d.0)), K::Date),
            Value::Text(_) => return nc("a text constant outside a comparison"),
        })
    }

    fn expr(&self, e: &Expr) -> Result<(Node, K), NotCompiled> {
        Ok(match &e.kind {
            ExprKind::Lit(Lit::Int(x) | Lit::Money(x)) => match i64::try_from(*x) {
                Ok(v) => (Node::Const(v), K::Num(0)),
                Err(_) => return nc("a literal beyond i64"),
            },
            ExprKind::Lit(Lit::Rate(d)) => match i64::try_from(d.num) {
                Ok(v) if d.scale <= MAX_SCALE => (Node::Const(v), K::Num(d.scale)),
                _ => return nc("a rate literal beyond i64"),
            },
            ExprKind::Lit(Lit::Bool(b)) => (Node::Const(i64::from(*b)), K::Bool),
            ExprKind::Lit(Lit::Date(d)) => (Node::Const(i64::from(d.0)), K::Date),
            ExprKind::Lit(Lit::Text(t)) => {
                // A word no enterprise has gets a code none has.
                let c = self.table.codes.get(t).copied().unwrap_or(-1);
                (Node::Const(c), K::Text)
            }
            ExprKind::Name(n) => {
                if let Some(k) = self.known.get(n) {
                    return Ok(k.clone());
                }
                let Some(&i) = self.table.index.get(n) else {
                    return nc(format!("no column {n}"));
                };
                let c = &self.table.cols[i];
                let want = self.types.get(n.as_str()).copied();
                let k = match (c.kind, want) {
                    (ColKind::Int, Some(Type::Int))
                    | (ColKind::Money, Some(Type::Money | Type::MoneyExact)) => K::Num(0),
                    (ColKind::Rate, Some(Type::Rate)) if c.exact.is_none() => K::Num(c.scale),
                    (ColKind::Bool, Some(Type::Bool)) => K::Bool,
                    (ColKind::Date, Some(Type::Date)) => K::Date,
                    (ColKind::Text, Some(Type::Text)) => K::Text,
                    _ => return nc(format!("column {n} does not have the input's type")),
                };
                (Node::Col(i), k)
            }
            ExprKind::Unary(op, x) => {
                let (n, k) = self.expr(x)?;
                match (*op, k) {
                    ("not", K::Bool) => (Node::Not(Box::new(n)), K::Bool),
                    (_, K::Num(s)) => (Node::Neg(Box::new(n)), K::Num(s)),
                    _ => return nc("an unsupported unary operation"),
                }
            }
            ExprKind::Binary(op, a, b) if *op == "and" || *op == "or" => {
                let (x, _) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                (Node::Logic(*op == "and", Box::new(x), Box::new(y)), K::Bool)
            }
            ExprKind::Binary(op, a, b) => {
                let (x, kx) = self.expr(a)?;
                let (y, ky) = self.expr(b)?;
                self.binary(op, (x, kx), (y, ky))?
            }
            ExprKind::Call(f, args) => match f.as_str() {
                "min" | "max" => {
                    let mut parts = Vec::new();
                    for a in args {
                        parts.push(self.num(a)?);
                    }
                    let s = parts.iter().map(|p| p.1).max().unwrap_or(0);
                    let nodes = parts
                        .into_iter()
                        .map(|(n, k)| scale_by(n, s - k))
                        .collect::<Result<Vec<_>, _>>()?;
                    (Node::MinMax(f == "min", nodes), K::Num(s))
                }
                "round_down" | "round_up" | "round_half_even" => {
                    let how = match f.as_str() {
                        "round_down" => Round::Down,
                        "round_up" => Round::Up,
                        _ => Round::HalfEven,
                    };
                    let Some(a) = args.first() else {
                        return nc("a rounding with no argument");
                    };
                    match self.expr(a)? {
                        (n, K::Num(s)) => (
                            Node::Round(how, Box::new(n), pow10(s).unwrap_or(1)),
                            K::Num(0),
                        ),
                        (f, K::Frac(sn, sd)) => (
                            Node::RoundFrac {
                                how,
                                f: Box::new(f),
                                n_mul: 10i128.pow(sd),
                                d_mul: 10i128.pow(sn),
                            },
                            K::Num(0),
                        ),
                        _ => return nc("rounding something other than a number"),
                    }
                }
                other => return nc(format!("function {other}")),
            },
            ExprKind::If(c, a, b) => {
                let (cn, _) = self.expr(c)?;
                let (x, kx) = self.expr(a)?;
                let (y, ky) = self.expr(b)?;
                match (kx, ky) {
                    (K::Num(sx), K::Num(sy)) => {
                        let (x, y, s) = align((x, sx), (y, sy))?;
                        (Node::If(Box::new(cn), Box::new(x), Box::new(y)), K::Num(s))
                    }
                    (K::Frac(..), _) | (_, K::Frac(..)) => {
                        let ((x, xn, xd), (y, yn, yd)) = (as_frac(x, kx)?, as_frac(y, ky)?);
                        let (sn, sd) = (xn.max(yn), xd.max(yd));
                        let x = frac_rescale(x, sn - xn, sd - xd)?;
                        let y = frac_rescale(y, sn - yn, sd - yd)?;
                        (
                            Node::If(Box::new(cn), Box::new(x), Box::new(y)),
                            K::Frac(sn, sd),
                        )
                    }
                    _ if kx == ky => (Node::If(Box::new(cn), Box::new(x), Box::new(y)), kx),
                    _ => return nc("if branches of different kinds"),
                }
            }
        })
    }

    fn binary(&self, op: &str, a: (Node, K), b: (Node, K)) -> Result<(Node, K), NotCompiled> {
        if let Some(cmp) = Cmp::parse(op) {
            return Ok((self.compare(cmp, a, b)?, K::Bool));
        }
        Ok(match (a, b) {
            ((x, K::Num(sx)), (y, K::Num(sy))) => match op {
                "+" | "-" => {
                    let (x, y, s) = align((x, sx), (y, sy))?;
                    let o = if op == "+" { Arith::Add } else { Arith::Sub };
                    (Node::Arith(o, Box::new(x), Box::new(y), false), K::Num(s))
                }
                "*" => {
                    let s = sx + sy;
                    if s > MAX_SCALE {
                        return nc("a product with more than 18 decimals");
                    }
                    (
                        Node::Arith(Arith::Mul, Box::new(x), Box::new(y), false),
                        K::Num(s),
                    )
                }
                "/" => (Node::Frac(Box::new(x), Box::new(y)), K::Frac(sx, sy)),
                _ => return nc(format!("operator {op}")),
            },
            ((x, K::Date), (y, K::Date)) if op == "-" => {
                (Node::DateDiff(Box::new(x), Box::new(y)), K::Num(0))
            }
            ((x, K::Date), (y, K::Num(s))) if op == "+" || op == "-" => (
                Node::DateShift(op == "+", Box::new(x), Box::new(y), pow10(s).unwrap_or(1)),
                K::Date,
            ),
            _ => return nc(format!("operator {op} on these kinds")),
        })
    }

    fn compare(&self, op: Cmp, a: (Node, K), b: (Node, K)) -> Result<Node, NotCompiled> {
        Ok(match (a, b) {
            ((x, K::Num(sx)), (y, K::Num(sy))) => {
                let (x, y, _) = align((x, sx), (y, sy))?;
                Node::Cmp(op, Box::new(x), Box::new(y))
            }
            ((f, K::Frac(sn, sd)), (c, K::Num(sc))) => {
                if sd + sc > 36 || sn > 36 {
                    return nc("a comparison with too many decimals");
                }
                Node::CmpFrac {
                    op,
                    f: Box::new(f),
                    c: Box::new(c),
                    n_mul: 10i128.pow(sd + sc),
                    cd_mul: 10i128.pow(sn),
                    check: FracCheck::Checked,
                }
            }
            ((c, K::Num(sc)), f @ (_, K::Frac(..))) => {
                return self.compare(op.swap(), f, (c, K::Num(sc)));
            }
            ((x, kx), (y, ky)) if kx == ky && !matches!(kx, K::Frac(..)) => {
                Node::Cmp(op, Box::new(x), Box::new(y))
            }
            _ => return nc("a comparison of these kinds"),
        })
    }
}

/// A policy ready to run over one table on one day.
#[derive(Debug, Clone)]
enum Program {
    Fast {
        clauses: Vec<(Node, bool)>,
        amount: Option<Node>,
        /// Scale of the amount (its integer is fen times 10^scale).
        amount_scale: u32,
        exceptions: Vec<(Node, Node)>,
        /// Input columns, for the interpreter on flagged rows.
        inputs: Vec<(String, usize)>,
    },
    Batch {
        why: NotCompiled,
        inputs: Vec<(String, usize)>,
    },
    /// The policy cannot run over this table at all (every row gets this error).
    Fails(EvalError),
}

/// Policies compiled for one table, each for its own day.
pub struct Plan<'p> {
    policies: Vec<(&'p PolicyAst, Program, Date)>,
    /// Per policy, how many of its first narrowing clauses are the previous policy's (a
    /// programme's variants of one template differ only in some parameters): within a
    /// block, their selection is taken from the previous policy instead of computed again.
    shared: Vec<usize>,
    /// How many values several places compute, each once per block (see [`share_subtrees`]).
    memos: usize,
    /// Rows per block ([`BLOCK`] unless set).
    block_rows: usize,
}

/// The clauses that narrow a selection (those that cannot fail), in order.
fn narrowing(p: &Program) -> Option<impl Iterator<Item = &Node>> {
    match p {
        Program::Fast { clauses, .. } => Some(clauses.iter().filter(|c| !c.1).map(|c| &c.0)),
        _ => None,
    }
}

fn compile(p: &PolicyAst, table: &Table, on: Date) -> Program {
    let mut inputs = Vec::new();
    for i in &p.inputs {
        match table.index.get(&i.name) {
            Some(c) => inputs.push((i.name.clone(), *c)),
            None => return Program::Fails(EvalError::MissingInput(i.name.clone())),
        }
    }
    match compile_fast(p, table, on, &inputs) {
        Ok(prog) => prog,
        Err(why) => Program::Batch { why, inputs },
    }
}

fn compile_fast(
    p: &PolicyAst,
    table: &Table,
    on: Date,
    inputs: &[(String, usize)],
) -> Result<Program, NotCompiled> {
    let mut c = Compiler {
        table,
        types: p
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.ty))
            .chain(p.params.iter().map(|x| (x.name.as_str(), x.ty)))
            .collect(),
        known: HashMap::new(),
    };
    for param in &p.params {
        // A parameter is the same for every row: computed once, exactly, here.
        let value = eval::param_on(param, on).map_err(|e| NotCompiled(e.to_string()))?;
        let v = eval::constant(&value.value).map_err(|e| NotCompiled(e.to_string()))?;
        let node = match &v {
            Value::Text(t) => (
                Node::Const(table.codes.get(t).copied().unwrap_or(-1)),
                K::Text,
            ),
            v => Compiler::constant(v)?,
        };
        c.known.insert(param.name.clone(), node);
    }
    let mut clauses = Vec::new();
    for clause in &p.clauses {
        let (n, k) = c.expr(&clause.expr)?;
        if k != K::Bool {
            return nc("a clause that is not a condition");
        }
        let may_flag = may_flag(&n, table, &mut Vec::new());
        let mut n = n;
        mark_safe(&mut n, table, &mut Vec::new());
        c.known.insert(clause.name.clone(), (n.clone(), K::Bool));
        clauses.push((n, may_flag));
    }
    let mut amount = None;
    let mut amount_scale = 0;
    let mut exceptions = Vec::new();
    if let Some(e) = &p.amount {
        let mut parts = vec![c.num(e)?];
        let mut whens = Vec::new();
        for ex in &p.exceptions {
            let (w, k) = c.expr(&ex.when)?;
            if k != K::Bool {
                return nc("an exception condition that is not a condition");
            }
            whens.push(w);
            parts.push(c.num(&ex.amount)?);
        }
        amount_scale = parts.iter().map(|p| p.1).max().unwrap_or(0);
        let mut aligned = parts
            .into_iter()
            .map(|(n, s)| scale_by(n, amount_scale - s))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        amount = aligned.next();
        exceptions = whens.into_iter().zip(aligned).collect();
    }
    for n in clauses
        .iter_mut()
        .map(|c| &mut c.0)
        .chain(amount.iter_mut())
        .chain(exceptions.iter_mut().flat_map(|(w, x)| [w, x]))
    {
        mark_total(n, table);
    }
    Ok(Program::Fast {
        clauses,
        amount,
        amount_scale,
        exceptions,
        inputs: inputs.to_vec(),
    })
}

impl<'p> Plan<'p> {
    /// Compiles every policy for `table`, each to be decided as on its day.
    pub fn new(policies: impl IntoIterator<Item = (&'p PolicyAst, Date)>, table: &Table) -> Self {
        let mut policies: Vec<_> = policies
            .into_iter()
            .map(|(p, on)| (p, compile(p, table, on), on))
            .collect();
        let memos = share_subtrees(&mut policies);
        // A decision does not depend on the order of clauses that cannot fail, so each
        // policy takes first the ones the previous policy also has, in its order: the
        // longer the common start, the more a block shares (see `shared`).
        for i in 1..policies.len() {
            let (before, after) = policies.split_at_mut(i);
            let prev: Vec<&Node> = match narrowing(&before[i - 1].1) {
                Some(it) => it.collect(),
                None => continue,
            };
            if let Program::Fast { clauses, .. } = &mut after[0].1 {
                let rank = |c: &(Node, bool)| {
                    if c.1 {
                        usize::MAX
                    } else {
                        prev.iter()
                            .position(|p| **p == c.0)
                            .unwrap_or(usize::MAX - 1)
                    }
                };
                // Stable: clauses not in the previous policy keep their order.
                clauses.sort_by_key(rank);
            }
        }
        let shared = (0..policies.len())
            .map(|i| {
                let prev = i.checked_sub(1).and_then(|j| narrowing(&policies[j].1));
                match (prev, narrowing(&policies[i].1)) {
                    (Some(a), Some(b)) => a.zip(b).take_while(|(x, y)| x == y).count(),
                    _ => 0,
                }
            })
            .collect();
        Self {
            policies,
            shared,
            memos,
            block_rows: BLOCK,
        }
    }
    /// Runs blocks of `rows` rows (at least one) instead of [`BLOCK`]: small blocks let a
    /// test cross block boundaries with few rows.
    pub fn with_block_rows(mut self, rows: usize) -> Self {
        self.block_rows = rows.max(1);
        self
    }
    /// How many distinct values the plan computes once per block for several places.
    pub fn shared_values(&self) -> usize {
        self.memos
    }
    /// Policies that run through the batch evaluator, and why.
    pub fn not_compiled(&self) -> Vec<(&str, &str)> {
        self.policies
            .iter()
            .filter_map(|(p, prog, _)| match prog {
                Program::Batch { why, .. } => Some((p.id.as_str(), why.0.as_str())),
                _ => None,
            })
            .collect()
    }
    pub fn len(&self) -> usize {
        self.policies.len()
    }
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

// ---- Running ----------------------------------------------------------------------------

/// One policy's decisions for one block of rows.
pub struct BlockResult<'a> {
    /// The policy's position in the plan.
    pub policy: usize,
    pub first_row: usize,
    pub rows: usize,
    /// The eligible rows (offsets from `first_row`, increasing).
    pub eligible: &'a [u32],
    /// Their amounts in fen, in the same order (`None`: the policy has no amount).
    pub amount: &'a [Option<Fen>],
    /// Rows whose decision is an error (they are not eligible above).
    pub errors: &'a [(usize, EvalError)],
}

/// Receives decisions block by block (one per thread).
pub trait Sink {
    fn block(&mut self, result: &BlockResult<'_>);
}

/// A value per row of a block, or one for all rows.
enum V<'a> {
    Const(i64),
    Slice(&'a [i64]),
    Buf(Vec<i64>),
}

impl V<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> i64 {
        match self {
            V::Const(c) => *c,
            V::Slice(s) => s[i],
            V::Buf(b) => b[i],
        }
    }
}

/// Values and, where any row was flagged, the flags.
struct R<'a> {
    v: V<'a>,
    f: Option<Vec<bool>>,
}

/// Reusable buffers, so a block allocates nothing once warm.
#[derive(Default)]
struct Pool {
    vals: Vec<Vec<i64>>,
    flags: Vec<Vec<bool>>,
    /// Per [`Node::Memo`] id, its values over the whole of one block.
    memo: Vec<MemoSlot>,
}

#[derive(Default)]
struct MemoSlot {
    /// The block's first row + 1 (0: nothing yet).
    block: usize,
    /// The value for every row, when it is the same for all.
    constant: Option<i64>,
    vals: Vec<i64>,
    flags: Option<Vec<bool>>,
}

impl Pool {
    /// A buffer of `n` values, not cleared: every operation writes each row it yields
    /// (a flagged row's value is never read).
    fn vals(&mut self, n: usize) -> Vec<i64> {
        let mut v = self.vals.pop().unwrap_or_default();
        v.resize(n, 0);
        v
    }
    fn flags(&mut self, n: usize) -> Vec<bool> {
        let mut v = self.flags.pop().unwrap_or_default();
        v.clear();
        v.resize(n, false);
        v
    }
    fn give(&mut self, r: R<'_>) {
        if let V::Buf(b) = r.v {
            self.vals.push(b);
        }
        if let Some(f) = r.f {
            self.flags.push(f);
        }
    }
    fn give_flags(&mut self, f: Option<Vec<bool>>) {
        if let Some(f) = f {
            self.flags.push(f);
        }
    }
    /// Flags of either side.
    fn union(&mut self, a: Option<Vec<bool>>, b: Option<Vec<bool>>) -> Option<Vec<bool>> {
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

/// `n / d` (d > 0) rounded to a whole number, in the integer type named: i128 for
/// quotients, i64 for decimals (where the division by a constant becomes a multiplication).
macro_rules! rounding {
    ($name:ident, $t:ty) => {
        #[inline(always)]
        fn $name(n: $t, d: $t, how: Round) -> $t {
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
fn cross_compare<T>(op: Cmp, out: &mut [i64], xs: &[i64], ys: &[i64], z: &V<'_>, nm: T, cm: T)
where
    T: Copy + Ord + From<i64> + std::ops::Mul<Output = T>,
{
    #[inline(always)]
    fn go<T: Copy + From<i64> + std::ops::Mul<Output = T>>(
        out: &mut [i64],
        xs: &[i64],
        ys: &[i64],
        z: &V<'_>,
        nm: T,
        cm: T,
        test: impl Fn(T, T) -> bool,
    ) {
        match z {
            // Only in i64, where `c·cm` is proven to fit by itself.
            V::Const(c) => {
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
fn compare(x: &V<'_>, y: &V<'_>, out: &mut [i64], test: impl Fn(i64, i64) -> bool) {
    match (x, y) {
        (V::Const(a), y) => {
            let ys = values(y);
            for (o, b) in out.iter_mut().zip(ys) {
                *o = i64::from(test(*a, *b));
            }
        }
        (x, V::Const(b)) => {
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

/// A non-constant value's rows.
fn values<'v>(v: &'v V<'_>) -> &'v [i64] {
    match v {
        V::Slice(s) => s,
        V::Buf(b) => b,
        V::Const(_) => &[],
    }
}

/// Rows `from..from + n` of the table, or, with a selection, the rows `from + sel[i]`
/// (`n` of them): nodes then see the selected rows only, in order.
struct Block<'a, 's> {
    table: &'a Table,
    from: usize,
    n: usize,
    sel: Option<&'s [u32]>,
}

impl<'a> Block<'a, '_> {
    /// `r` with a constant spelled out per row, so loops run over plain slices.
    fn full(&self, pool: &mut Pool, r: R<'a>) -> R<'a> {
        match r.v {
            V::Const(c) => {
                let mut b = pool.vals(self.n);
                b.iter_mut().for_each(|v| *v = c);
                R {
                    v: V::Buf(b),
                    f: r.f,
                }
            }
            _ => r,
        }
    }

    /// Per row, `x` where `cond` (spelled out, see [`Block::full`]) holds, else `y`; a row
    /// keeps the flags of the condition and of the branch it takes, as the interpreter
    /// evaluates only that branch.
    fn choose(&self, pool: &mut Pool, cond: &R<'a>, x: R<'a>, y: R<'a>) -> R<'a> {
        let n = self.n;
        let x = self.full(pool, x);
        let y = self.full(pool, y);
        let mut out = pool.vals(n);
        for (((o, c), p), q) in out
            .iter_mut()
            .zip(values(&cond.v))
            .zip(values(&x.v))
            .zip(values(&y.v))
        {
            *o = if *c != 0 { *p } else { *q };
        }
        let flags = match (cond.f.as_ref(), x.f.as_ref(), y.f.as_ref()) {
            (None, None, None) => None,
            (cf, xf, yf) => {
                let mut fl = pool.flags(n);
                for (i, (f, c)) in fl.iter_mut().zip(values(&cond.v)).enumerate() {
                    let taken = if *c != 0 { xf } else { yf };
                    *f = cf.is_some_and(|v| v[i]) || taken.is_some_and(|v| v[i]);
                }
                Some(fl)
            }
        };
        pool.give(x);
        pool.give(y);
        R {
            v: V::Buf(out),
            f: flags,
        }
    }

    /// The same block's rows `sel` (indices into the block).
    fn select<'t>(&self, sel: &'t [u32]) -> Block<'a, 't> {
        Block {
            table: self.table,
            from: self.from,
            n: sel.len(),
            sel: Some(sel),
        }
    }

    /// Applies `f`, which cannot fail, to every row.
    fn map_total(&self, pool: &mut Pool, x: R<'a>, f: impl Fn(i64) -> i64) -> R<'a> {
        if let V::Const(c) = x.v {
            return R {
                v: V::Const(f(c)),
                f: x.f,
            };
        }
        let mut out = pool.vals(self.n);
        for (o, v) in out.iter_mut().zip(values(&x.v)) {
            *o = f(*v);
        }
        let flags = x.f;
        if let V::Buf(b) = x.v {
            pool.vals.push(b);
        }
        R {
            v: V::Buf(out),
            f: flags,
        }
    }

    /// Applies `f` to every row; `None` flags the row.
    fn map1(&self, pool: &mut Pool, x: R<'a>, f: impl Fn(i64) -> Option<i64>) -> R<'a> {
        if let V::Const(c) = x.v
            && let Some(v) = f(c)
        {
            return R {
                v: V::Const(v),
                f: x.f,
            };
        }
        let mut out = pool.vals(self.n);
        let mut flags = x.f;
        let x = self.full(pool, R { v: x.v, f: None });
        let xs = values(&x.v);
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
        if let V::Buf(b) = x.v {
            pool.vals.push(b);
        }
        R {
            v: V::Buf(out),
            f: flags,
        }
    }

    fn map2(
        &self,
        pool: &mut Pool,
        x: R<'a>,
        y: R<'a>,
        f: impl Fn(i64, i64) -> Option<i64>,
    ) -> R<'a> {
        let flags = pool.union(x.f, y.f);
        if let (V::Const(a), V::Const(b)) = (&x.v, &y.v)
            && let Some(v) = f(*a, *b)
        {
            return R {
                v: V::Const(v),
                f: flags,
            };
        }
        let mut out = pool.vals(self.n);
        let mut flags = flags;
        // The common shapes get their own loops so the compiler can vectorise them.
        let mut bad = false;
        match (&x.v, &y.v) {
            (V::Const(a), y) => {
                for (o, b) in out.iter_mut().zip(values(y)) {
                    match f(*a, *b) {
                        Some(v) => *o = v,
                        None => bad = true,
                    }
                }
            }
            (x, V::Const(b)) => {
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
                if f(x.v.at(i), y.v.at(i)).is_none() {
                    *fl = true;
                }
            }
        }
        pool.give(R { v: x.v, f: None });
        pool.give(R { v: y.v, f: None });
        R {
            v: V::Buf(out),
            f: flags,
        }
    }

    /// A quotient's numerator and denominator; a zero denominator flags its row (the
    /// interpreter fails at the division itself).
    fn eval_frac(&self, pool: &mut Pool, node: &Node) -> (R<'a>, R<'a>) {
        let n = self.n;
        match node {
            Node::Frac(a, b) => {
                let x = self.eval(pool, a);
                let y = self.eval(pool, b);
                let mut y = self.full(pool, y);
                if values(&y.v).contains(&0) {
                    let fl = y.f.get_or_insert_with(|| pool.flags(n));
                    for (i, f) in fl.iter_mut().enumerate() {
                        *f |= y.v.at(i) == 0;
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

    fn eval(&self, pool: &mut Pool, node: &Node) -> R<'a> {
        let n = self.n;
        match node {
            Node::Const(c) => R {
                v: V::Const(*c),
                f: None,
            },
            Node::Col(i) => {
                let col = &self.table.cols[*i].vals[self.from..];
                match self.sel {
                    None => R {
                        v: V::Slice(&col[..n]),
                        f: None,
                    },
                    Some(sel) => {
                        let mut out = pool.vals(n);
                        for (o, j) in out.iter_mut().zip(sel) {
                            *o = col[*j as usize];
                        }
                        R {
                            v: V::Buf(out),
                            f: None,
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
            Node::Arith(op, a, b, total) => {
                let (x, y) = (self.eval(pool, a), self.eval(pool, b));
                // Wrapping where proven not to overflow: the same values, but loops the
                // compiler can vectorise (a flagged child row's value is never read).
                match (op, total) {
                    (Arith::Add, false) => self.map2(pool, x, y, i64::checked_add),
                    (Arith::Sub, false) => self.map2(pool, x, y, i64::checked_sub),
                    (Arith::Mul, false) => self.map2(pool, x, y, i64::checked_mul),
                    (Arith::Add, true) => self.map2(pool, x, y, |a, b| Some(a.wrapping_add(b))),
                    (Arith::Sub, true) => self.map2(pool, x, y, |a, b| Some(a.wrapping_sub(b))),
                    (Arith::Mul, true) => self.map2(pool, x, y, |a, b| Some(a.wrapping_mul(b))),
                }
            }
            Node::Cmp(op, a, b) => {
                let (x, y) = (self.eval(pool, a), self.eval(pool, b));
                if let (V::Const(p), V::Const(q)) = (&x.v, &y.v) {
                    let v = i64::from(op.test(*p, *q));
                    let f = pool.union(x.f, y.f);
                    return R { v: V::Const(v), f };
                }
                let mut out = pool.vals(n);
                // One loop per operator, so each is a plain vectorisable comparison.
                match op {
                    Cmp::Eq => compare(&x.v, &y.v, &mut out, |p, q| p == q),
                    Cmp::Ne => compare(&x.v, &y.v, &mut out, |p, q| p != q),
                    Cmp::Lt => compare(&x.v, &y.v, &mut out, |p, q| p < q),
                    Cmp::Le => compare(&x.v, &y.v, &mut out, |p, q| p <= q),
                    Cmp::Gt => compare(&x.v, &y.v, &mut out, |p, q| p > q),
                    Cmp::Ge => compare(&x.v, &y.v, &mut out, |p, q| p >= q),
                }
                let f = pool.union(x.f, y.f);
                pool.give(R { v: x.v, f: None });
                pool.give(R { v: y.v, f: None });
                R { v: V::Buf(out), f }
            }
            Node::DateDiff(a, b) => {
                let (x, y) = (self.eval(pool, a), self.eval(pool, b));
                self.map2(pool, x, y, i64::checked_sub)
            }
            Node::DateShift(plus, d, k, den) => {
                let (x, y) = (self.eval(pool, d), self.eval(pool, k));
                let (plus, den) = (*plus, *den);
                self.map2(pool, x, y, move |d, k| {
                    let days = k.div_euclid(den);
                    // The interpreter keeps dates as i32 days.
                    let r = if plus {
                        d.checked_add(days)
                    } else {
                        d.checked_sub(days)
                    }?;
                    i32::try_from(r).ok().map(i64::from)
                })
            }
            Node::MinMax(min, xs) => {
                let mut acc = self.eval(pool, &xs[0]);
                for x in &xs[1..] {
                    let y = self.eval(pool, x);
                    acc = if *min {
                        self.map2(pool, acc, y, |a, b| Some(a.min(b)))
                    } else {
                        self.map2(pool, acc, y, |a, b| Some(a.max(b)))
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
                let (xs, ys) = (values(&x.v), values(&y.v));
                match narrow {
                    Some((nm, cm)) => cross_compare(*op, &mut out, xs, ys, &z.v, nm, cm),
                    None => cross_compare(*op, &mut out, xs, ys, &z.v, *n_mul, *cd_mul),
                }
                pool.give(x);
                pool.give(y);
                pool.give(z);
                R {
                    v: V::Buf(out),
                    f: None,
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
                let mut flags = pool.union(x.f, y.f);
                flags = pool.union(flags, z.f);
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
                    .zip(values(&x.v))
                    .zip(values(&y.v))
                    .zip(values(&z.v))
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
                pool.give(R { v: x.v, f: None });
                pool.give(R { v: y.v, f: None });
                pool.give(R { v: z.v, f: None });
                R {
                    v: V::Buf(out),
                    f: flags,
                }
            }
            Node::Logic(and, a, b) => {
                let x = self.eval(pool, a);
                let x = self.full(pool, x);
                let y = self.eval(pool, b);
                let y = self.full(pool, y);
                let and = *and;
                let xv = &x.v;
                let mut out = pool.vals(n);
                let (xs, ys) = (values(&x.v), values(&y.v));
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
                let flags = match (x.f.as_ref(), y.f.as_ref()) {
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
                R {
                    v: V::Buf(out),
                    f: flags,
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
                    m.constant = match &r.v {
                        V::Const(c) => Some(*c),
                        v => {
                            m.vals.clear();
                            m.vals.extend_from_slice(values(v));
                            None
                        }
                    };
                    match (&r.f, &mut m.flags) {
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
    fn recall(&self, pool: &mut Pool, id: usize) -> R<'a> {
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
            Some(c) => V::Const(c),
            None => {
                let mut out = pool.vals(self.n);
                match self.sel {
                    None => out.copy_from_slice(&m.vals[..self.n]),
                    Some(sel) => out
                        .iter_mut()
                        .zip(sel)
                        .for_each(|(o, j)| *o = m.vals[*j as usize]),
                }
                V::Buf(out)
            }
        };
        pool.memo[id] = m;
        R { v, f }
    }
}

/// `v`'s values for the eligible rows, into `out`: the rows `sel` of a whole block's values,
/// or (no `sel`) the values as they come, already one per eligible row.
fn pick(v: &V<'_>, sel: Option<&[u32]>, out: &mut [i64]) {
    match (v, sel) {
        (V::Const(c), _) => out.fill(*c),
        (v, Some(sel)) => {
            let xs = values(v);
            out.iter_mut()
                .zip(sel)
                .for_each(|(o, j)| *o = xs[*j as usize]);
        }
        (v, None) => out.copy_from_slice(&values(v)[..out.len()]),
    }
}

/// Per-thread scratch space for one block.
#[derive(Default)]
struct Scratch {
    pool: Pool,
    /// Block rows eligible so far (increasing), then eligible.
    sel: Vec<u32>,
    /// Block rows flagged for the interpreter (increasing, no repeats once sorted).
    flagged: Vec<u32>,
    /// Amounts of the rows in `sel`.
    amount: Vec<Option<Fen>>,
    errors: Vec<(usize, EvalError)>,
    /// Merging the interpreter's decisions in.
    merged: Vec<(u32, Option<Fen>)>,
    /// The selection (and whether it is still every row) after each narrowing clause of
    /// the previous policy, for the next to start from (see [`Plan`]'s `shared`).
    prefix: Vec<(Vec<u32>, bool)>,
}

/// Narrows `sel` by a clause of the shape `column OP constant`, `column` or `not column`
/// in one pass over the column; false (and nothing done) for any other clause.
fn narrow_direct(node: &Node, block: &Block<'_, '_>, sel: &mut Vec<u32>, dense: bool) -> bool {
    let (col, op, c) = match node {
        Node::Cmp(op, a, b) => match (&**a, &**b) {
            (Node::Col(i), Node::Const(c)) => (*i, *op, *c),
            (Node::Const(c), Node::Col(i)) => (*i, op.swap(), *c),
            _ => return false,
        },
        Node::Col(i) => (*i, Cmp::Ne, 0),
        Node::Not(x) => match &**x {
            Node::Col(i) => (*i, Cmp::Eq, 0),
            _ => return false,
        },
        _ => return false,
    };
    let vals = &block.table.cols[col].vals[block.from..block.from + block.n];
    match op {
        Cmp::Eq => narrow_by(vals, sel, dense, |v| v == c),
        Cmp::Ne => narrow_by(vals, sel, dense, |v| v != c),
        Cmp::Lt => narrow_by(vals, sel, dense, |v| v < c),
        Cmp::Le => narrow_by(vals, sel, dense, |v| v <= c),
        Cmp::Gt => narrow_by(vals, sel, dense, |v| v > c),
        Cmp::Ge => narrow_by(vals, sel, dense, |v| v >= c),
    }
    true
}

#[inline(always)]
fn narrow_by(vals: &[i64], sel: &mut Vec<u32>, dense: bool, keep: impl Fn(i64) -> bool) {
    if dense {
        sel.resize(vals.len(), 0);
        let mut k = 0;
        for (j, v) in vals.iter().enumerate() {
            sel[k] = j as u32;
            k += usize::from(keep(*v));
        }
        sel.truncate(k);
    } else {
        let mut k = 0;
        for j in 0..sel.len() {
            let row = sel[j];
            sel[k] = row;
            k += usize::from(keep(vals[row as usize]));
        }
        sel.truncate(k);
    }
}

fn save_prefix(prefix: &mut Vec<(Vec<u32>, bool)>, k: usize, sel: &[u32], dense: bool) {
    if prefix.len() <= k {
        prefix.resize_with(k + 1, Default::default);
    }
    prefix[k].0.clear();
    prefix[k].0.extend_from_slice(sel);
    prefix[k].1 = dense;
}

/// Keeps the rows of `sel` whose value in `vs` (aligned with `sel`, or with the whole block
/// when `dense`) is not zero.
#[inline]
fn narrow(sel: &mut Vec<u32>, vs: &[i64], dense: bool, n: usize) {
    if dense {
        sel.resize(n, 0);
        let mut k = 0;
        for (j, v) in vs.iter().enumerate().take(n) {
            sel[k] = j as u32;
            k += usize::from(*v != 0);
        }
        sel.truncate(k);
    } else {
        let mut k = 0;
        for j in 0..sel.len() {
            let keep = vs[j] != 0;
            sel[k] = sel[j];
            k += usize::from(keep);
        }
        sel.truncate(k);
    }
}

fn run_policy<S: Sink>(
    plan: &Plan<'_>,
    index: usize,
    block: &Block<'_, '_>,
    s: &mut Scratch,
    sink: &mut S,
) {
    let (policy, program, on) = &plan.policies[index];
    let on = *on;
    let n = block.n;
    s.sel.clear();
    s.flagged.clear();
    s.amount.clear();
    s.errors.clear();
    match program {
        Program::Fails(e) => {
            s.errors.extend((0..n).map(|i| (block.from + i, e.clone())));
        }
        Program::Batch { inputs, .. } => {
            let cols = block.table.slice(inputs, block.from, block.from + n);
            match crate::batch::decide_all(policy, &cols, on, 1) {
                Ok(outcomes) => {
                    for (i, o) in outcomes.into_iter().enumerate() {
                        match o {
                            Ok(Outcome { eligible, amount }) => {
                                if eligible {
                                    s.sel.push(i as u32);
                                    s.amount.push(amount);
                                }
                            }
                            Err(e) => s.errors.push((block.from + i, e)),
                        }
                    }
                }
                Err(e) => {
                    s.errors.extend((0..n).map(|i| (block.from + i, e.clone())));
                }
            }
        }
        Program::Fast {
            clauses,
            amount,
            amount_scale,
            exceptions,
            inputs,
        } => {
            // Clauses that cannot fail run on the rows still eligible only (a selection
            // that narrows clause by clause); a clause that can fail runs on every row,
            // since its error decides even a row another clause rules out. The order of
            // clauses does not change a decision, so the narrowing ones go first. All the
            // bookkeeping is per selected row, so a selective policy costs little.
            let mut sel = std::mem::take(&mut s.sel);
            let mut dense = true;
            let share = plan.shared[index];
            let next_shares = plan.shared.get(index + 1).copied().unwrap_or(0);
            if share > 0 {
                let (from, was_dense) = &s.prefix[share - 1];
                sel.clear();
                sel.extend_from_slice(from);
                dense = *was_dense;
            }
            for (k, (node, _)) in clauses.iter().filter(|c| !c.1).enumerate() {
                if k < share {
                    continue;
                }
                if !dense && sel.is_empty() {
                    for k2 in k..next_shares {
                        save_prefix(&mut s.prefix, k2, &sel, dense);
                    }
                    break;
                }
                // The commonest clauses (a column against a constant, a yes/no column)
                // narrow the selection directly, in one pass.
                if narrow_direct(node, block, &mut sel, dense) {
                    dense = false;
                    if k < next_shares {
                        save_prefix(&mut s.prefix, k, &sel, dense);
                    }
                    continue;
                }
                // Gathering the selected rows pays only when it leaves out many: a
                // selection of more than half the block is evaluated whole, then picked.
                let whole = dense || sel.len() * 2 > n;
                let r = if whole {
                    block.eval(&mut s.pool, node)
                } else {
                    block.select(&sel).eval(&mut s.pool, node)
                };
                // The analysis proved no row can be flagged here (the property test checks
                // it); were one flagged anyway, the interpreter still decides it.
                debug_assert!(
                    r.f.as_ref().is_none_or(|f| !f.contains(&true)),
                    "a clause that cannot fail flagged a row: {node:?}"
                );
                if let Some(f) = &r.f {
                    if dense {
                        s.flagged.extend((0..n as u32).filter(|j| f[*j as usize]));
                    } else {
                        for (j, row) in sel.iter().enumerate() {
                            if f[if whole { *row as usize } else { j }] {
                                s.flagged.push(*row);
                            }
                        }
                    }
                }
                match &r.v {
                    V::Const(c) => {
                        if *c == 0 {
                            sel.clear();
                            dense = false;
                        }
                    }
                    v if whole && !dense => {
                        let vs = values(v);
                        sel.retain(|i| vs[*i as usize] != 0);
                    }
                    v => {
                        narrow(&mut sel, values(v), dense, n);
                        dense = false;
                    }
                }
                s.pool.give(r);
                if k < next_shares {
                    save_prefix(&mut s.prefix, k, &sel, dense);
                }
            }
            if dense {
                sel.clear();
                sel.extend(0..n as u32);
            }
            for (node, _) in clauses.iter().filter(|c| c.1) {
                let r = block.eval(&mut s.pool, node);
                match &r.v {
                    V::Const(c) => {
                        if *c == 0 {
                            sel.clear();
                        }
                    }
                    v => {
                        let vs = values(v);
                        sel.retain(|i| vs[*i as usize] != 0);
                    }
                }
                if let Some(f) = &r.f {
                    s.flagged.extend((0..n as u32).filter(|i| f[*i as usize]));
                }
                s.pool.give(r);
            }
            if !s.flagged.is_empty() {
                s.flagged.sort_unstable();
                s.flagged.dedup();
                let flagged = &s.flagged;
                sel.retain(|i| flagged.binary_search(i).is_err());
            }
            // The amount, for the rows eligible and not flagged only.
            match amount {
                None => s.amount.resize(sel.len(), None),
                Some(_) if sel.is_empty() => {}
                Some(base) => {
                    let m = sel.len();
                    // As for clauses: a dense selection is evaluated whole, then picked.
                    let whole = m * 2 > n;
                    let sub = if whole {
                        block.select(&[])
                    } else {
                        block.select(&sel)
                    };
                    let on_rows = if whole { block } else { &sub };
                    let at = |j: usize| if whole { sel[j] as usize } else { j };
                    let den = 10i64.pow(*amount_scale);
                    let picked = whole.then_some(&sel[..]);
                    let r = on_rows.eval(&mut s.pool, base);
                    let mut vals: Vec<i64> = s.pool.vals(m);
                    pick(&r.v, picked, &mut vals);
                    let mut flags = r.f;
                    if let V::Buf(b) = r.v {
                        s.pool.vals.push(b);
                    }
                    if !exceptions.is_empty() {
                        let mut decided = s.pool.flags(m);
                        let (mut wv, mut xv) = (s.pool.vals(m), s.pool.vals(m));
                        for (when, value) in exceptions {
                            let w = on_rows.eval(&mut s.pool, when);
                            let x = on_rows.eval(&mut s.pool, value);
                            pick(&w.v, picked, &mut wv);
                            pick(&x.v, picked, &mut xv);
                            for j in 0..m {
                                let take = !decided[j] & (wv[j] != 0);
                                decided[j] |= take;
                                vals[j] = if take { xv[j] } else { vals[j] };
                            }
                            // Conservative: any flag of an exception sends the row to the
                            // interpreter, which knows which exceptions it reached.
                            flags = s.pool.union(flags, w.f);
                            flags = s.pool.union(flags, x.f);
                            s.pool.give(R { v: w.v, f: None });
                            s.pool.give(R { v: x.v, f: None });
                        }
                        s.pool.flags.push(decided);
                        s.pool.vals.push(wv);
                        s.pool.vals.push(xv);
                    }
                    if den == 1 {
                        s.amount.extend(vals.iter().map(|v| Some(Fen(*v))));
                    } else {
                        // Between fen: as the interpreter, no amount.
                        s.amount
                            .extend(vals.iter().map(|v| (v % den == 0).then(|| Fen(v / den))));
                    }
                    if let Some(f) = &flags {
                        // Rows whose amount could not be computed go to the interpreter.
                        let bad: Vec<bool> = (0..m).map(|j| f[at(j)]).collect();
                        let mut k = 0;
                        for j in 0..m {
                            if bad[j] {
                                s.flagged.push(sel[j]);
                            } else {
                                sel[k] = sel[j];
                                s.amount[k] = s.amount[j];
                                k += 1;
                            }
                        }
                        sel.truncate(k);
                        s.amount.truncate(k);
                        s.flagged.sort_unstable();
                        s.flagged.dedup();
                    }
                    s.pool.give_flags(flags);
                    s.pool.vals.push(vals);
                }
            }
            if !s.flagged.is_empty() {
                // The interpreter decides the flagged rows; merge them in, in row order.
                s.merged.clear();
                s.merged
                    .extend(sel.iter().copied().zip(s.amount.iter().copied()));
                for i in &s.flagged {
                    let row = block.from + *i as usize;
                    let facts: HashMap<String, Value> = inputs
                        .iter()
                        .map(|(name, c)| (name.clone(), block.table.value(*c, row)))
                        .collect();
                    match eval::decide(policy, &facts, on) {
                        Ok(d) if d.eligible => s.merged.push((*i, d.amount)),
                        Ok(_) => {}
                        Err(e) => s.errors.push((row, e)),
                    }
                }
                s.merged.sort_unstable_by_key(|m| m.0);
                sel.clear();
                s.amount.clear();
                for (i, a) in &s.merged {
                    sel.push(*i);
                    s.amount.push(*a);
                }
            }
            s.sel = sel;
        }
    }
    sink.block(&BlockResult {
        policy: index,
        first_row: block.from,
        rows: n,
        eligible: &s.sel,
        amount: &s.amount,
        errors: &s.errors,
    });
}

/// Runs every policy of `plan` over every row of `table`, block by block, on `threads`
/// threads (each with its own sink from `make_sink`; returned in thread order).
pub fn run<S: Sink + Send>(
    plan: &Plan<'_>,
    table: &Table,
    threads: usize,
    make_sink: impl Fn() -> S + Sync,
) -> Vec<S> {
    let rows_per_block = plan.block_rows;
    let blocks = table.rows.div_ceil(rows_per_block);
    let threads = threads.clamp(1, 64).min(blocks.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                let make_sink = &make_sink;
                sc.spawn(move || {
                    let mut sink = make_sink();
                    let mut scratch = Scratch::default();
                    loop {
                        // Blocks are handed out one at a time, so a slow block (many
                        // flagged rows) does not leave the other thread idle.
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if b >= blocks {
                            break;
                        }
                        let from = b * rows_per_block;
                        let block = Block {
                            table,
                            from,
                            n: rows_per_block.min(table.rows - from),
                            sel: None,
                        };
                        for p in 0..plan.policies.len() {
                            run_policy(plan, p, &block, &mut scratch, &mut sink);
                        }
                    }
                    sink
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a matching thread panicked"))
            .collect()
    })
}

/// A sink that keeps every decision (tests and small tables).
#[derive(Debug, Default)]
pub struct Collect {
    /// (policy, row) → outcome, in no particular order.
    pub decisions: Vec<(usize, usize, Result<Outcome, EvalError>)>,
}

impl Sink for Collect {
    fn block(&mut self, r: &BlockResult<'_>) {
        let errors: HashMap<usize, &EvalError> = r.errors.iter().map(|(i, e)| (*i, e)).collect();
        let eligible: HashMap<usize, Option<Fen>> = r
            .eligible
            .iter()
            .zip(r.amount)
            .map(|(i, a)| (*i as usize, *a))
            .collect();
        for i in 0..r.rows {
            let row = r.first_row + i;
            let o = match errors.get(&row) {
                Some(e) => Err((*e).clone()),
                None => Ok(match eligible.get(&i) {
                    Some(a) => Outcome {
                        eligible: true,
                        amount: *a,
                    },
                    None => Outcome {
                        eligible: false,
                        amount: None,
                    },
                }),
            };
            self.decisions.push((r.policy, row, o));
        }
    }
}

/// One policy's decisions, summed, with the claims kept where asked for.
#[derive(Debug, Default, Clone)]
pub struct PolicyClaims {
    pub eligible: u64,
    /// Sum of the eligible amounts, in fen.
    pub asked: i128,
    pub errors: u64,
    /// Σ (row + 1) · amount over the eligible rows, modulo 2³¹ − 1: two runs (or two
    /// engines) that agree on it agree on every amount but with odds of about 1 in 2³¹.
    pub checksum: u64,
    /// The first error, with its row (for the message).
    pub first_error: Option<(usize, EvalError)>,
    /// (row, amount) of each eligible row, when kept; rows in order after [`Claims::merge`].
    pub claims: Vec<(u32, Fen)>,
}

const CHECKSUM_MODULUS: u64 = (1 << 31) - 1;

/// A sink that counts and totals per policy, keeping the claims of the policies asked for
/// (to share a budget or write payouts): the rest cost no memory per enterprise.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    pub keep: Vec<bool>,
    pub per_policy: Vec<PolicyClaims>,
}

impl Claims {
    pub fn new(keep: Vec<bool>) -> Self {
        let per_policy = vec![PolicyClaims::default(); keep.len()];
        Self { keep, per_policy }
    }

    /// Adds up the per-thread parts; claims end up in row order.
    pub fn merge(parts: Vec<Claims>) -> Claims {
        let mut parts = parts.into_iter();
        let Some(mut out) = parts.next() else {
            return Claims::default();
        };
        for p in parts {
            for (o, x) in out.per_policy.iter_mut().zip(p.per_policy) {
                o.eligible += x.eligible;
                o.asked += x.asked;
                o.errors += x.errors;
                o.checksum = (o.checksum + x.checksum) % CHECKSUM_MODULUS;
                o.first_error = match (o.first_error.take(), x.first_error) {
                    (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                    (a, b) => a.or(b),
                };
                o.claims.extend(x.claims);
            }
        }
        for o in &mut out.per_policy {
            o.claims.sort_unstable_by_key(|c| c.0);
        }
        out
    }
}

impl Sink for Claims {
    fn block(&mut self, r: &BlockResult<'_>) {
        let keep = self.keep.get(r.policy).copied().unwrap_or(false);
        let t = &mut self.per_policy[r.policy];
        t.errors += r.errors.len() as u64;
        if let Some(first) = r.errors.first()
            && t.first_error.as_ref().is_none_or(|f| f.0 > first.0)
        {
            t.first_error = Some(first.clone());
        }
        let mut asked = 0i128;
        let count = r.eligible.len() as u64;
        // Exact within a block (|row · fen| < 2^95, 4,096 of them), reduced once.
        let mut weighted = 0i128;
        for (i, a) in r.eligible.iter().zip(r.amount) {
            let fen = a.unwrap_or(Fen(0));
            asked += i128::from(fen.0);
            weighted += (r.first_row + *i as usize + 1) as i128 * i128::from(fen.0);
            if keep {
                t.claims.push(((r.first_row + *i as usize) as u32, fen));
            }
        }
        t.eligible += count;
        t.asked += asked;
        let m = i128::from(CHECKSUM_MODULUS);
        t.checksum = ((i128::from(t.checksum) + weighted.rem_euclid(m)) % m) as u64;
    }
}
