//! Compiling a policy for one table and day: parameters become constants, every expression a
//! [`Node`] with a fixed-point scale ([`ValueKind`]), or the reason it cannot be
//! ([`NotCompiled`]), in which case the policy runs through the batch evaluator.

use std::collections::HashMap;

use citybrain_core::Date;

use super::MAX_SCALE;
use super::bounds::{mark_safe, mark_total, may_flag};
use super::node::{
    Arith, ArithCheck, Cmp, Connective, Extreme, FracCheck, Node, Round, Sign, ValueKind,
};
use super::table::{ColumnKind, Table};
use crate::eval::{self, EvalError, Ratio, Value};
use crate::syntax::{Expr, ExprKind, Lit, PolicyAst, Type};

/// Why a policy runs through the batch evaluator instead.
#[derive(Debug, Clone, PartialEq)]
pub struct NotCompiled(pub String);

pub(super) struct Compiler<'a> {
    table: &'a Table,
    types: HashMap<&'a str, Type>,
    /// Parameters and clauses by name, already compiled.
    known: HashMap<String, (Node, ValueKind)>,
}

pub(super) fn pow10(k: u32) -> Option<i64> {
    10i64.checked_pow(k)
}

pub(super) fn not_compiled<T>(why: impl Into<String>) -> Result<T, NotCompiled> {
    Err(NotCompiled(why.into()))
}

/// The smallest scale at which an exact ratio is a whole i64, if any.
pub(super) fn fixed(r: Ratio) -> Option<(i64, u32)> {
    for s in 0..=MAX_SCALE {
        let scaled = r.num.checked_mul(10i128.pow(s))?;
        if scaled % r.den == 0 {
            return i64::try_from(scaled / r.den).ok().map(|v| (v, s));
        }
    }
    None
}

/// `x` times 10^k, folded when `x` is a constant.
pub(super) fn scale_by(x: Node, k: u32) -> Result<Node, NotCompiled> {
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
pub(super) fn as_frac(x: Node, k: ValueKind) -> Result<(Node, u32, u32), NotCompiled> {
    match k {
        ValueKind::Num(s) => Ok((Node::Frac(Box::new(x), Box::new(Node::Const(1))), s, 0)),
        ValueKind::Frac(sn, sd) => Ok((x, sn, sd)),
        _ => not_compiled("a quotient beside a value that is not a number"),
    }
}

/// A quotient-valued node with its numerator times 10^dn and denominator times 10^dd.
pub(super) fn frac_rescale(x: Node, dn: u32, dd: u32) -> Result<Node, NotCompiled> {
    Ok(match x {
        Node::Frac(n, d) => Node::Frac(Box::new(scale_by(*n, dn)?), Box::new(scale_by(*d, dd)?)),
        Node::If(c, a, b) => Node::If(
            c,
            Box::new(frac_rescale(*a, dn, dd)?),
            Box::new(frac_rescale(*b, dn, dd)?),
        ),
        _ => return not_compiled("an unexpected quotient"),
    })
}

/// Brings two decimals to one scale.
pub(super) fn align(a: (Node, u32), b: (Node, u32)) -> Result<(Node, Node, u32), NotCompiled> {
    let s = a.1.max(b.1);
    Ok((scale_by(a.0, s - a.1)?, scale_by(b.0, s - b.1)?, s))
}

impl Compiler<'_> {
    fn num(&self, e: &Expr) -> Result<(Node, u32), NotCompiled> {
        match self.expr(e)? {
            (n, ValueKind::Num(s)) => Ok((n, s)),
            _ => not_compiled("a number that is a quotient where a decimal is needed"),
        }
    }

    fn constant(v: &Value) -> Result<(Node, ValueKind), NotCompiled> {
        Ok(match v {
            Value::Num(r) => match fixed(*r) {
                Some((v, s)) => (Node::Const(v), ValueKind::Num(s)),
                None => return not_compiled("a constant that is not a decimal"),
            },
            Value::Bool(b) => (Node::Const(i64::from(*b)), ValueKind::Bool),
            Value::Date(d) => (Node::Const(i64::from(d.0)), ValueKind::Date),
            Value::Text(_) => return not_compiled("a text constant outside a comparison"),
        })
    }

    fn expr(&self, e: &Expr) -> Result<(Node, ValueKind), NotCompiled> {
        Ok(match &e.kind {
            ExprKind::Lit(Lit::Int(x) | Lit::Money(x)) => match i64::try_from(*x) {
                Ok(v) => (Node::Const(v), ValueKind::Num(0)),
                Err(_) => return not_compiled("a literal beyond i64"),
            },
            ExprKind::Lit(Lit::Rate(d)) => match i64::try_from(d.num) {
                Ok(v) if d.scale <= MAX_SCALE => (Node::Const(v), ValueKind::Num(d.scale)),
                _ => return not_compiled("a rate literal beyond i64"),
            },
            ExprKind::Lit(Lit::Bool(b)) => (Node::Const(i64::from(*b)), ValueKind::Bool),
            ExprKind::Lit(Lit::Date(d)) => (Node::Const(i64::from(d.0)), ValueKind::Date),
            ExprKind::Lit(Lit::Text(t)) => {
                // A word no enterprise has gets a code none has.
                let c = self.table.codes.get(t).copied().unwrap_or(-1);
                (Node::Const(c), ValueKind::Text)
            }
            ExprKind::Name(n) => {
                if let Some(k) = self.known.get(n) {
                    return Ok(k.clone());
                }
                let Some(&i) = self.table.index.get(n) else {
                    return not_compiled(format!("no column {n}"));
                };
                let c = &self.table.cols[i];
                let want = self.types.get(n.as_str()).copied();
                let k = match (c.kind, want) {
                    (ColumnKind::Int, Some(Type::Int))
                    | (ColumnKind::Money, Some(Type::Money | Type::MoneyExact)) => {
                        ValueKind::Num(0)
                    }
                    (ColumnKind::Rate, Some(Type::Rate)) if c.exact.is_none() => {
                        ValueKind::Num(c.scale)
                    }
                    (ColumnKind::Bool, Some(Type::Bool)) => ValueKind::Bool,
                    (ColumnKind::Date, Some(Type::Date)) => ValueKind::Date,
                    (ColumnKind::Text, Some(Type::Text)) => ValueKind::Text,
                    _ => return not_compiled(format!("column {n} does not have the input's type")),
                };
                (Node::Col(i), k)
            }
            ExprKind::Unary(op, x) => {
                let (n, k) = self.expr(x)?;
                match (*op, k) {
                    ("not", ValueKind::Bool) => (Node::Not(Box::new(n)), ValueKind::Bool),
                    (_, ValueKind::Num(s)) => (Node::Neg(Box::new(n)), ValueKind::Num(s)),
                    _ => return not_compiled("an unsupported unary operation"),
                }
            }
            ExprKind::Binary(op, a, b) if *op == "and" || *op == "or" => {
                let (x, _) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                (
                    Node::Logic(
                        if *op == "and" {
                            Connective::And
                        } else {
                            Connective::Or
                        },
                        Box::new(x),
                        Box::new(y),
                    ),
                    ValueKind::Bool,
                )
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
                    let extreme = if f == "min" {
                        Extreme::Min
                    } else {
                        Extreme::Max
                    };
                    (Node::MinMax(extreme, nodes), ValueKind::Num(s))
                }
                "round_down" | "round_up" | "round_half_even" => {
                    let how = match f.as_str() {
                        "round_down" => Round::Down,
                        "round_up" => Round::Up,
                        _ => Round::HalfEven,
                    };
                    let Some(a) = args.first() else {
                        return not_compiled("a rounding with no argument");
                    };
                    match self.expr(a)? {
                        (n, ValueKind::Num(s)) => (
                            Node::Round(how, Box::new(n), pow10(s).unwrap_or(1)),
                            ValueKind::Num(0),
                        ),
                        (f, ValueKind::Frac(sn, sd)) => (
                            Node::RoundFrac {
                                how,
                                f: Box::new(f),
                                n_mul: 10i128.pow(sd),
                                d_mul: 10i128.pow(sn),
                            },
                            ValueKind::Num(0),
                        ),
                        _ => return not_compiled("rounding something other than a number"),
                    }
                }
                other => return not_compiled(format!("function {other}")),
            },
            ExprKind::If(c, a, b) => {
                let (cn, _) = self.expr(c)?;
                let (x, kx) = self.expr(a)?;
                let (y, ky) = self.expr(b)?;
                match (kx, ky) {
                    (ValueKind::Num(sx), ValueKind::Num(sy)) => {
                        let (x, y, s) = align((x, sx), (y, sy))?;
                        (
                            Node::If(Box::new(cn), Box::new(x), Box::new(y)),
                            ValueKind::Num(s),
                        )
                    }
                    (ValueKind::Frac(..), _) | (_, ValueKind::Frac(..)) => {
                        let ((x, xn, xd), (y, yn, yd)) = (as_frac(x, kx)?, as_frac(y, ky)?);
                        let (sn, sd) = (xn.max(yn), xd.max(yd));
                        let x = frac_rescale(x, sn - xn, sd - xd)?;
                        let y = frac_rescale(y, sn - yn, sd - yd)?;
                        (
                            Node::If(Box::new(cn), Box::new(x), Box::new(y)),
                            ValueKind::Frac(sn, sd),
                        )
                    }
                    _ if kx == ky => (Node::If(Box::new(cn), Box::new(x), Box::new(y)), kx),
                    _ => return not_compiled("if branches of different kinds"),
                }
            }
        })
    }

    fn binary(
        &self,
        op: &str,
        a: (Node, ValueKind),
        b: (Node, ValueKind),
    ) -> Result<(Node, ValueKind), NotCompiled> {
        if let Some(cmp) = Cmp::parse(op) {
            return Ok((self.compare(cmp, a, b)?, ValueKind::Bool));
        }
        Ok(match (a, b) {
            ((x, ValueKind::Num(sx)), (y, ValueKind::Num(sy))) => match op {
                "+" | "-" => {
                    let (x, y, s) = align((x, sx), (y, sy))?;
                    let o = if op == "+" { Arith::Add } else { Arith::Sub };
                    (
                        Node::Arith(o, Box::new(x), Box::new(y), ArithCheck::Checked),
                        ValueKind::Num(s),
                    )
                }
                "*" => {
                    let s = sx + sy;
                    if s > MAX_SCALE {
                        return not_compiled("a product with more than 18 decimals");
                    }
                    (
                        Node::Arith(Arith::Mul, Box::new(x), Box::new(y), ArithCheck::Checked),
                        ValueKind::Num(s),
                    )
                }
                "/" => (
                    Node::Frac(Box::new(x), Box::new(y)),
                    ValueKind::Frac(sx, sy),
                ),
                _ => return not_compiled(format!("operator {op}")),
            },
            ((x, ValueKind::Date), (y, ValueKind::Date)) if op == "-" => {
                (Node::DateDiff(Box::new(x), Box::new(y)), ValueKind::Num(0))
            }
            ((x, ValueKind::Date), (y, ValueKind::Num(s))) if op == "+" || op == "-" => {
                let sign = if op == "+" { Sign::Plus } else { Sign::Minus };
                (
                    Node::DateShift(sign, Box::new(x), Box::new(y), pow10(s).unwrap_or(1)),
                    ValueKind::Date,
                )
            }
            _ => return not_compiled(format!("operator {op} on these kinds")),
        })
    }

    fn compare(
        &self,
        op: Cmp,
        a: (Node, ValueKind),
        b: (Node, ValueKind),
    ) -> Result<Node, NotCompiled> {
        Ok(match (a, b) {
            ((x, ValueKind::Num(sx)), (y, ValueKind::Num(sy))) => {
                let (x, y, _) = align((x, sx), (y, sy))?;
                Node::Cmp(op, Box::new(x), Box::new(y))
            }
            ((f, ValueKind::Frac(sn, sd)), (c, ValueKind::Num(sc))) => {
                if sd + sc > 36 || sn > 36 {
                    return not_compiled("a comparison with too many decimals");
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
            ((c, ValueKind::Num(sc)), f @ (_, ValueKind::Frac(..))) => {
                return self.compare(op.swap(), f, (c, ValueKind::Num(sc)));
            }
            ((x, kx), (y, ky)) if kx == ky && !matches!(kx, ValueKind::Frac(..)) => {
                Node::Cmp(op, Box::new(x), Box::new(y))
            }
            _ => return not_compiled("a comparison of these kinds"),
        })
    }
}

/// Whether a compiled clause can flag a row, which decides where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClauseKind {
    /// Cannot fail: it narrows the selection, running on the rows still eligible only.
    Narrowing,
    /// May flag a row (an overflow, a zero divisor): it runs on every row, since its error
    /// decides even a row another clause rules out.
    MayFlag,
}

/// A policy ready to run over one table on one day.
#[derive(Debug, Clone)]
pub(super) enum Program {
    Fast {
        clauses: Vec<(Node, ClauseKind)>,
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

pub(super) fn compile(p: &PolicyAst, table: &Table, on: Date) -> Program {
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

pub(super) fn compile_fast(
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
                ValueKind::Text,
            ),
            v => Compiler::constant(v)?,
        };
        c.known.insert(param.name.clone(), node);
    }
    let mut clauses = Vec::new();
    for clause in &p.clauses {
        let (n, k) = c.expr(&clause.expr)?;
        if k != ValueKind::Bool {
            return not_compiled("a clause that is not a condition");
        }
        let kind = if may_flag(&n, table, &mut Vec::new()) {
            ClauseKind::MayFlag
        } else {
            ClauseKind::Narrowing
        };
        let mut n = n;
        mark_safe(&mut n, table, &mut Vec::new());
        c.known
            .insert(clause.name.clone(), (n.clone(), ValueKind::Bool));
        clauses.push((n, kind));
    }
    let mut amount = None;
    let mut amount_scale = 0;
    let mut exceptions = Vec::new();
    if let Some(e) = &p.amount {
        let mut parts = vec![c.num(e)?];
        let mut whens = Vec::new();
        for ex in &p.exceptions {
            let (w, k) = c.expr(&ex.when)?;
            if k != ValueKind::Bool {
                return not_compiled("an exception condition that is not a condition");
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
