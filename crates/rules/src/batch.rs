//! The batch evaluator: one policy over a whole table of enterprises, column at a time.
//!
//! Each expression node is computed for every row at once into a column; a row whose value
//! could not be computed (overflow, division by zero) carries an error flag instead, and
//! `and`, `or` and `if` pick per row exactly as the interpreter's short-circuits do, so an
//! error in a branch a row does not take never reaches it. Rows are split between threads.
//! The interpreter ([`crate::eval`]) and this evaluator must agree on every decision: a
//! property test checks it on random tables and random rules.

use std::collections::HashMap;

use citybrain_core::Fen;

use crate::eval::{EvalError, Ratio, param_on};
use crate::syntax::{Expr, ExprKind, Lit, PolicyAst};

/// A column of input values, one per enterprise.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Int(Vec<i64>),
    /// Fen.
    Money(Vec<i64>),
    Rate(Vec<Ratio>),
    Bool(Vec<bool>),
    Text(Vec<String>),
    Date(Vec<i32>),
}

impl Column {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn len(&self) -> usize {
        match self {
            Self::Int(v) | Self::Money(v) => v.len(),
            Self::Rate(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Text(v) => v.len(),
            Self::Date(v) => v.len(),
        }
    }
    fn slice(&self, from: usize, to: usize) -> Self {
        match self {
            Self::Int(v) => Self::Int(v[from..to].to_vec()),
            Self::Money(v) => Self::Money(v[from..to].to_vec()),
            Self::Rate(v) => Self::Rate(v[from..to].to_vec()),
            Self::Bool(v) => Self::Bool(v[from..to].to_vec()),
            Self::Text(v) => Self::Text(v[from..to].to_vec()),
            Self::Date(v) => Self::Date(v[from..to].to_vec()),
        }
    }
}

/// Per row: `None` while fine, else the error that row hit.
type Errors = Vec<Option<EvalError>>;

#[derive(Debug, Clone)]
enum Vals {
    Num(Vec<Ratio>),
    Bool(Vec<bool>),
    Text(Vec<String>),
    Date(Vec<i32>),
}

#[derive(Debug, Clone)]
struct Col {
    vals: Vals,
    err: Errors,
}

/// One enterprise's decision from a batch run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub eligible: bool,
    pub amount: Option<Fen>,
}

fn merge(a: &Errors, b: &Errors) -> Errors {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.clone().or_else(|| y.clone()))
        .collect()
}

struct Batch<'a> {
    rows: usize,
    names: HashMap<&'a str, Col>,
}

impl<'a> Batch<'a> {
    fn constant(&self, v: Vals) -> Col {
        Col {
            vals: v,
            err: vec![None; self.rows],
        }
    }

    fn eval(&self, e: &Expr) -> Col {
        let n = self.rows;
        match &e.kind {
            ExprKind::Lit(l) => self.constant(match l {
                Lit::Int(x) | Lit::Money(x) => Vals::Num(vec![Ratio::int(*x); n]),
                Lit::Rate(d) => {
                    let r = 10i128
                        .checked_pow(d.scale)
                        .and_then(|p| Ratio::checked(d.num, p))
                        .unwrap_or(Ratio::int(0));
                    Vals::Num(vec![r; n])
                }
                Lit::Bool(b) => Vals::Bool(vec![*b; n]),
                Lit::Text(t) => Vals::Text(vec![t.clone(); n]),
                Lit::Date(d) => Vals::Date(vec![d.0; n]),
            }),
            ExprKind::Name(name) => self.names[name.as_str()].clone(),
            ExprKind::Unary(op, x) => {
                let mut c = self.eval(x);
                match (&mut c.vals, *op) {
                    (Vals::Bool(v), "not") => v.iter_mut().for_each(|b| *b = !*b),
                    (Vals::Num(v), _) => {
                        for (i, r) in v.iter_mut().enumerate() {
                            match r.num.checked_neg() {
                                Some(m) => r.num = m,
                                None => {
                                    c.err[i].get_or_insert(EvalError::Overflow);
                                }
                            }
                        }
                    }
                    _ => {}
                }
                c
            }
            ExprKind::Binary(op, a, b) if *op == "and" || *op == "or" => {
                let (x, y) = (self.eval(a), self.eval(b));
                let (Vals::Bool(xv), Vals::Bool(yv)) = (&x.vals, &y.vals) else {
                    unreachable!("the checker makes both sides bool")
                };
                let and = *op == "and";
                let mut vals = Vec::with_capacity(n);
                let mut err = Vec::with_capacity(n);
                for i in 0..n {
                    // As the interpreter: the right side only when the left does not decide.
                    if x.err[i].is_some() {
                        vals.push(false);
                        err.push(x.err[i].clone());
                    } else if xv[i] != and {
                        vals.push(xv[i]);
                        err.push(None);
                    } else {
                        vals.push(yv[i]);
                        err.push(y.err[i].clone());
                    }
                }
                Col {
                    vals: Vals::Bool(vals),
                    err,
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (x, y) = (self.eval(a), self.eval(b));
                let mut err = merge(&x.err, &y.err);
                let vals = match (x.vals, y.vals) {
                    (Vals::Num(p), Vals::Num(q)) => match *op {
                        "==" | "!=" | "<" | "<=" | ">" | ">=" => Vals::Bool(
                            p.iter()
                                .zip(&q)
                                .map(|(a, b)| order(op, a.cmp_exact(*b)))
                                .collect(),
                        ),
                        _ => {
                            let mut out = Vec::with_capacity(n);
                            for i in 0..n {
                                let r = match *op {
                                    "+" => p[i].add_checked(q[i]),
                                    "-" => p[i].sub_checked(q[i]),
                                    "*" => p[i].mul_checked(q[i]),
                                    _ if q[i].num == 0 => {
                                        err[i].get_or_insert(EvalError::DivisionByZero);
                                        Some(Ratio::int(0))
                                    }
                                    _ => p[i].div_checked(q[i]),
                                };
                                out.push(r.unwrap_or_else(|| {
                                    err[i].get_or_insert(EvalError::Overflow);
                                    Ratio::int(0)
                                }));
                            }
                            Vals::Num(out)
                        }
                    },
                    (Vals::Date(p), Vals::Date(q)) => match *op {
                        "-" => Vals::Num(
                            p.iter()
                                .zip(&q)
                                .map(|(a, b)| Ratio::int(i128::from(a - b)))
                                .collect(),
                        ),
                        _ => {
                            Vals::Bool(p.iter().zip(&q).map(|(a, b)| order(op, a.cmp(b))).collect())
                        }
                    },
                    (Vals::Date(p), Vals::Num(q)) => Vals::Date(
                        p.iter()
                            .zip(&q)
                            .map(|(d, k)| {
                                let days = k.floor_exact() as i32;
                                if *op == "+" { d + days } else { d - days }
                            })
                            .collect(),
                    ),
                    (Vals::Text(p), Vals::Text(q)) => Vals::Bool(
                        p.iter()
                            .zip(&q)
                            .map(|(a, b)| (a == b) == (*op == "=="))
                            .collect(),
                    ),
                    (Vals::Bool(p), Vals::Bool(q)) => Vals::Bool(
                        p.iter()
                            .zip(&q)
                            .map(|(a, b)| (a == b) == (*op == "=="))
                            .collect(),
                    ),
                    (v, _) => v,
                };
                Col { vals, err }
            }
            ExprKind::Call(f, args) => {
                let cols: Vec<Col> = args.iter().map(|a| self.eval(a)).collect();
                let mut err = cols[0].err.clone();
                for c in &cols[1..] {
                    err = merge(&err, &c.err);
                }
                let nums: Vec<&Vec<Ratio>> = cols
                    .iter()
                    .filter_map(|c| match &c.vals {
                        Vals::Num(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                let vals = match f.as_str() {
                    "min" | "max" => Vals::Num(
                        (0..n)
                            .map(|i| {
                                let mut best = nums[0][i];
                                for v in &nums[1..] {
                                    let better = if f == "min" {
                                        v[i].cmp_exact(best).is_lt()
                                    } else {
                                        v[i].cmp_exact(best).is_gt()
                                    };
                                    if better {
                                        best = v[i];
                                    }
                                }
                                best
                            })
                            .collect(),
                    ),
                    how => Vals::Num(
                        nums[0]
                            .iter()
                            .map(|r| Ratio::int(r.round_as(how)))
                            .collect(),
                    ),
                };
                Col { vals, err }
            }
            ExprKind::If(c, a, b) => {
                let (cc, x, y) = (self.eval(c), self.eval(a), self.eval(b));
                let Vals::Bool(cv) = &cc.vals else {
                    unreachable!("the checker makes conditions bool")
                };
                let pick = |i: usize| cc.err[i].is_none() && cv[i];
                let err = (0..n)
                    .map(|i| {
                        cc.err[i].clone().or_else(|| {
                            if cv[i] {
                                x.err[i].clone()
                            } else {
                                y.err[i].clone()
                            }
                        })
                    })
                    .collect();
                let vals = match (x.vals, y.vals) {
                    (Vals::Num(p), Vals::Num(q)) => {
                        Vals::Num((0..n).map(|i| if pick(i) { p[i] } else { q[i] }).collect())
                    }
                    (Vals::Bool(p), Vals::Bool(q)) => {
                        Vals::Bool((0..n).map(|i| if pick(i) { p[i] } else { q[i] }).collect())
                    }
                    (Vals::Date(p), Vals::Date(q)) => {
                        Vals::Date((0..n).map(|i| if pick(i) { p[i] } else { q[i] }).collect())
                    }
                    (Vals::Text(p), Vals::Text(q)) => Vals::Text(
                        (0..n)
                            .map(|i| if pick(i) { p[i].clone() } else { q[i].clone() })
                            .collect(),
                    ),
                    (v, _) => v,
                };
                Col { vals, err }
            }
        }
    }
}

fn order(op: &str, o: std::cmp::Ordering) -> bool {
    match op {
        "==" => o.is_eq(),
        "!=" => o.is_ne(),
        "<" => o.is_lt(),
        "<=" => o.is_le(),
        ">" => o.is_gt(),
        _ => o.is_ge(),
    }
}

fn input_col(c: &Column) -> Col {
    let n = c.len();
    let vals = match c {
        Column::Int(v) | Column::Money(v) => {
            Vals::Num(v.iter().map(|x| Ratio::int(i128::from(*x))).collect())
        }
        Column::Rate(v) => Vals::Num(v.clone()),
        Column::Bool(v) => Vals::Bool(v.clone()),
        Column::Text(v) => Vals::Text(v.clone()),
        Column::Date(v) => Vals::Date(v.clone()),
    };
    Col {
        vals,
        err: vec![None; n],
    }
}

fn run_chunk(
    policy: &PolicyAst,
    columns: &HashMap<String, Column>,
    on: citybrain_core::Date,
) -> Result<Vec<Result<Outcome, EvalError>>, EvalError> {
    let rows = columns.values().next().map_or(0, Column::len);
    let mut batch = Batch {
        rows,
        names: HashMap::new(),
    };
    for input in &policy.inputs {
        let col = columns
            .get(&input.name)
            .ok_or_else(|| EvalError::MissingInput(input.name.clone()))?;
        batch.names.insert(&input.name, input_col(col));
    }
    let mut err: Errors = vec![None; rows];
    for param in &policy.params {
        let value = param_on(param, on)?;
        let col = batch.eval(&value.value);
        // The interpreter computes every parameter first: an error there is every row's.
        err = merge(&err, &col.err);
        batch.names.insert(&param.name, col);
    }
    let mut eligible = vec![true; rows];
    for clause in &policy.clauses {
        let c = batch.eval(&clause.expr);
        if let Vals::Bool(v) = &c.vals {
            for i in 0..rows {
                eligible[i] &= v[i];
            }
        }
        err = merge(&err, &c.err);
        batch.names.insert(&clause.name, c);
    }
    let mut amount: Vec<Option<Ratio>> = vec![None; rows];
    if let Some(expr) = &policy.amount {
        let base = batch.eval(expr);
        let Vals::Num(base_vals) = &base.vals else {
            unreachable!("the checker makes the amount money")
        };
        let mut decided = vec![false; rows];
        let mut amount_err: Errors = base.err.clone();
        for i in 0..rows {
            amount[i] = Some(base_vals[i]);
            // The base amount is part of the explanation: it must be a valid amount even
            // where an exception overrides it (as in the interpreter).
            if base_vals[i].den == 1 && i64::try_from(base_vals[i].num).is_err() {
                amount_err[i].get_or_insert(EvalError::Overflow);
            }
        }
        for ex in &policy.exceptions {
            let when = batch.eval(&ex.when);
            let value = batch.eval(&ex.amount);
            let (Vals::Bool(w), Vals::Num(v)) = (&when.vals, &value.vals) else {
                continue;
            };
            for i in 0..rows {
                if decided[i] || amount_err[i].is_some() {
                    continue;
                }
                if let Some(e) = &when.err[i] {
                    amount_err[i] = Some(e.clone());
                } else if w[i] {
                    decided[i] = true;
                    amount[i] = Some(v[i]);
                    amount_err[i] = value.err[i].clone();
                }
            }
        }
        // The amount only counts for eligible rows (the interpreter does not compute it
        // otherwise, so its errors do not count either).
        for i in 0..rows {
            if eligible[i] && err[i].is_none() {
                err[i] = amount_err[i].clone();
            }
        }
    }
    Ok((0..rows)
        .map(|i| match &err[i] {
            Some(e) => Err(e.clone()),
            None if !eligible[i] => Ok(Outcome {
                eligible: false,
                amount: None,
            }),
            None => {
                let fen = match amount[i] {
                    Some(r) if r.den == 1 => match i64::try_from(r.num) {
                        Ok(n) => Some(Fen(n)),
                        Err(_) => return Err(EvalError::Overflow),
                    },
                    _ => None,
                };
                Ok(Outcome {
                    eligible: true,
                    amount: fen,
                })
            }
        })
        .collect())
}

/// Decides every row of `columns` (input name → column) on `on`, on `threads` threads.
pub fn decide_all(
    policy: &PolicyAst,
    columns: &HashMap<String, Column>,
    on: citybrain_core::Date,
    threads: usize,
) -> Result<Vec<Result<Outcome, EvalError>>, EvalError> {
    let rows = columns.values().next().map_or(0, Column::len);
    let threads = threads.clamp(1, 64).min(rows.max(1));
    if threads == 1 {
        return run_chunk(policy, columns, on);
    }
    let per = rows.div_ceil(threads);
    let chunks: Vec<HashMap<String, Column>> = (0..threads)
        .map(|t| {
            let (from, to) = ((t * per).min(rows), ((t + 1) * per).min(rows));
            columns
                .iter()
                .map(|(k, c)| (k.clone(), c.slice(from, to)))
                .collect()
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| s.spawn(move || run_chunk(policy, chunk, on)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a batch thread panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(rows);
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
