//! The interpreter for one enterprise: the decision and its explanation (which clauses held,
//! which failed and why, every amount along the way), for the enterprise-facing page and for
//! auditors. Arithmetic is exact (rationals over i128); rounding happens only where the
//! policy says.

use std::collections::HashMap;

use citybrain_core::{Date, Fen};

use crate::syntax::{Expr, ExprKind, Lit, Param, ParamValue, PolicyAst, Type};

/// An exact rational, denominator positive, reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub num: i128,
    pub den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl Ratio {
    /// `num / den` reduced; `None` for a zero denominator or on overflow.
    pub fn checked(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let (num, den) = if den < 0 {
            (num.checked_neg()?, den.checked_neg()?)
        } else {
            (num, den)
        };
        let g = gcd(num, den);
        Some(Self {
            num: num / g,
            den: den / g,
        })
    }
    pub fn int(n: i128) -> Self {
        Self { num: n, den: 1 }
    }
    // Every operation is checked: a value too large for exact arithmetic is an error,
    // never a silently wrapped amount.
    fn add(self, o: Self) -> Option<Self> {
        let a = self.num.checked_mul(o.den)?;
        let b = o.num.checked_mul(self.den)?;
        Self::checked(a.checked_add(b)?, self.den.checked_mul(o.den)?)
    }
    fn sub(self, o: Self) -> Option<Self> {
        self.add(Self {
            num: o.num.checked_neg()?,
            den: o.den,
        })
    }
    fn mul(self, o: Self) -> Option<Self> {
        // Cross-reduce first to keep the numbers small.
        let g1 = gcd(self.num, o.den);
        let g2 = gcd(o.num, self.den);
        Self::checked(
            (self.num / g1).checked_mul(o.num / g2)?,
            (self.den / g2).checked_mul(o.den / g1)?,
        )
    }
    fn div(self, o: Self) -> Option<Self> {
        if o.num == 0 {
            return None;
        }
        self.mul(Self::checked(o.den, o.num)?)
    }
    fn cmp(self, o: Self) -> std::cmp::Ordering {
        match (self.num.checked_mul(o.den), o.num.checked_mul(self.den)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Too large to cross-multiply: compare as floats (only ever for huge values).
            _ => (self.num as f64 / self.den as f64).total_cmp(&(o.num as f64 / o.den as f64)),
        }
    }
    fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }
    pub(crate) fn add_checked(self, o: Self) -> Option<Self> {
        self.add(o)
    }
    pub(crate) fn sub_checked(self, o: Self) -> Option<Self> {
        self.sub(o)
    }
    pub(crate) fn mul_checked(self, o: Self) -> Option<Self> {
        self.mul(o)
    }
    pub(crate) fn div_checked(self, o: Self) -> Option<Self> {
        self.div(o)
    }
    pub(crate) fn cmp_exact(self, o: Self) -> std::cmp::Ordering {
        self.cmp(o)
    }
    pub(crate) fn floor_exact(self) -> i128 {
        self.floor()
    }
    pub(crate) fn round_as(self, how: &str) -> i128 {
        self.round(how)
    }
    fn round(self, how: &str) -> i128 {
        let floor = self.floor();
        let rest_num = self.num.rem_euclid(self.den);
        match how {
            "round_down" => floor,
            "round_up" => floor + i128::from(rest_num != 0),
            _ => match (rest_num * 2).cmp(&self.den) {
                std::cmp::Ordering::Less => floor,
                std::cmp::Ordering::Greater => floor + 1,
                std::cmp::Ordering::Equal => floor + floor.rem_euclid(2),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Int, money (in fen) and rate alike: the checker has made sure they are not mixed up.
    Num(Ratio),
    Bool(bool),
    Text(String),
    Date(Date),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Num(r) if r.den == 1 => write!(f, "{}", r.num),
            Self::Num(r) => write!(f, "{}/{}", r.num, r.den),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Text(t) => write!(f, "{t:?}"),
            Self::Date(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EvalError {
    #[error("no value for input {0}")]
    MissingInput(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("a value too large for exact arithmetic")]
    Overflow,
    #[error("{0} has no value on {1}")]
    NoParamValue(String, Date),
}

/// One clause's outcome, for the explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct ClauseOutcome {
    pub name: String,
    pub held: bool,
    /// The names the clause reads and their values.
    pub values: Vec<(String, String)>,
}

/// A decision with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub eligible: bool,
    pub clauses: Vec<ClauseOutcome>,
    /// The amount from the base rule, then the exception that overrode it, if any.
    pub base_amount: Option<Fen>,
    pub exception: Option<String>,
    pub amount: Option<Fen>,
}

impl Decision {
    pub fn failed(&self) -> impl Iterator<Item = &str> {
        self.clauses
            .iter()
            .filter(|c| !c.held)
            .map(|c| c.name.as_str())
    }
}

struct Env<'a> {
    values: HashMap<&'a str, Value>,
}

fn names_in<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
    match &e.kind {
        ExprKind::Name(n) => {
            if !out.contains(&n.as_str()) {
                out.push(n);
            }
        }
        ExprKind::Lit(_) => {}
        ExprKind::Unary(_, x) => names_in(x, out),
        ExprKind::Binary(_, a, b) => {
            names_in(a, out);
            names_in(b, out);
        }
        ExprKind::Call(_, args) => args.iter().for_each(|a| names_in(a, out)),
        ExprKind::If(c, a, b) => {
            names_in(c, out);
            names_in(a, out);
            names_in(b, out);
        }
    }
}

impl Env<'_> {
    fn eval(&self, e: &Expr) -> Result<Value, EvalError> {
        use Value::*;
        Ok(match &e.kind {
            ExprKind::Lit(l) => match l {
                Lit::Int(n) | Lit::Money(n) => Num(Ratio::int(*n)),
                Lit::Rate(d) => Num(Ratio::checked(
                    d.num,
                    10i128.checked_pow(d.scale).ok_or(EvalError::Overflow)?,
                )
                .ok_or(EvalError::Overflow)?),
                Lit::Bool(b) => Bool(*b),
                Lit::Text(t) => Text(t.clone()),
                Lit::Date(d) => Date(*d),
            },
            ExprKind::Name(n) => self
                .values
                .get(n.as_str())
                .cloned()
                .ok_or_else(|| EvalError::MissingInput(n.clone()))?,
            ExprKind::Unary(op, x) => match (*op, self.eval(x)?) {
                ("not", Bool(b)) => Bool(!b),
                (_, Num(r)) => Num(Ratio {
                    num: r.num.checked_neg().ok_or(EvalError::Overflow)?,
                    den: r.den,
                }),
                (_, v) => v,
            },
            ExprKind::Binary(op, a, b) => {
                if *op == "and" || *op == "or" {
                    let a = self.eval(a)? == Bool(true);
                    if (*op == "and" && !a) || (*op == "or" && a) {
                        return Ok(Bool(a));
                    }
                    return Ok(Bool(self.eval(b)? == Bool(true)));
                }
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                let order = match (&x, &y) {
                    (Num(p), Num(q)) => Some(p.cmp(*q)),
                    (Date(p), Date(q)) => Some(p.cmp(q)),
                    _ => None,
                };
                match *op {
                    "==" => Bool(x == y),
                    "!=" => Bool(x != y),
                    "<" => Bool(order == Some(std::cmp::Ordering::Less)),
                    "<=" => Bool(order.is_some_and(|o| o.is_le())),
                    ">" => Bool(order == Some(std::cmp::Ordering::Greater)),
                    ">=" => Bool(order.is_some_and(|o| o.is_ge())),
                    _ => match (x, y) {
                        (Num(p), Num(q)) => Num(match *op {
                            "+" => p.add(q).ok_or(EvalError::Overflow)?,
                            "-" => p.sub(q).ok_or(EvalError::Overflow)?,
                            "*" => p.mul(q).ok_or(EvalError::Overflow)?,
                            _ if q.num == 0 => return Err(EvalError::DivisionByZero),
                            _ => p.div(q).ok_or(EvalError::Overflow)?,
                        }),
                        (Date(p), Date(q)) => Num(Ratio::int(i128::from(p.0 - q.0))),
                        (Date(p), Num(q)) => {
                            let days = q.floor() as i32;
                            Date(citybrain_core::Date(if *op == "+" {
                                p.0 + days
                            } else {
                                p.0 - days
                            }))
                        }
                        (x, _) => x,
                    },
                }
            }
            ExprKind::Call(f, args) => {
                let vals: Vec<Value> = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<_, _>>()?;
                match f.as_str() {
                    "min" | "max" => {
                        let mut best = vals[0].clone();
                        for v in &vals[1..] {
                            if let (Num(b), Num(x)) = (&best, v) {
                                let better = if f == "min" {
                                    x.cmp(*b).is_lt()
                                } else {
                                    x.cmp(*b).is_gt()
                                };
                                if better {
                                    best = v.clone();
                                }
                            }
                        }
                        best
                    }
                    how => match &vals[0] {
                        Num(r) => Num(Ratio::int(r.round(how))),
                        v => v.clone(),
                    },
                }
            }
            ExprKind::If(c, a, b) => {
                if self.eval(c)? == Bool(true) {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
        })
    }
}

/// Yuan with two decimals and thousands separators, e.g. `¥1,234,567.89`.
pub fn yuan(f: Fen) -> String {
    let (sign, abs) = if f.0 < 0 {
        ("-", -(f.0 as i128))
    } else {
        ("", f.0 as i128)
    };
    let whole = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}¥{grouped}.{:02}", abs % 100)
}

/// A value as an official reads it: money in yuan, rates in percent.
fn show(v: &Value, ty: Option<Type>) -> String {
    match (v, ty) {
        (Value::Num(r), Some(Type::Money)) if r.den == 1 => {
            i64::try_from(r.num).map_or_else(|_| v.to_string(), |n| yuan(Fen(n)))
        }
        (Value::Num(r), Some(Type::Rate)) => {
            let pct = r.num as f64 * 100.0 / r.den as f64;
            format!("{pct}%")
        }
        _ => v.to_string(),
    }
}

fn fen(v: Value) -> Result<Option<Fen>, EvalError> {
    match v {
        Value::Num(r) if r.den == 1 => i64::try_from(r.num)
            .map(|n| Some(Fen(n)))
            .map_err(|_| EvalError::Overflow),
        _ => Ok(None),
    }
}

/// The value a parameter has on `on`: its latest dated value from on or before that day.
pub(crate) fn param_on(param: &Param, on: Date) -> Result<&ParamValue, EvalError> {
    param
        .values
        .iter()
        .rfind(|v| v.from.is_none_or(|d| d <= on))
        .ok_or_else(|| EvalError::NoParamValue(param.name.clone(), on))
}

/// Decides for one enterprise (`facts`: input name → value) on `on`, explaining.
pub fn decide(
    policy: &PolicyAst,
    facts: &HashMap<String, Value>,
    on: Date,
) -> Result<Decision, EvalError> {
    let mut env = Env {
        values: HashMap::new(),
    };
    let types: HashMap<&str, Type> = policy
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.ty))
        .chain(policy.params.iter().map(|p| (p.name.as_str(), p.ty)))
        .collect();
    for input in &policy.inputs {
        let v = facts
            .get(&input.name)
            .cloned()
            .ok_or_else(|| EvalError::MissingInput(input.name.clone()))?;
        env.values.insert(&input.name, v);
    }
    for param in &policy.params {
        let value = param_on(param, on)?;
        let v = env.eval(&value.value)?;
        env.values.insert(&param.name, v);
    }
    let mut clauses = Vec::new();
    for clause in &policy.clauses {
        let held = env.eval(&clause.expr)? == Value::Bool(true);
        let mut names = Vec::new();
        names_in(&clause.expr, &mut names);
        let values = names
            .iter()
            .filter_map(|n| {
                env.values
                    .get(n)
                    .map(|v| (n.to_string(), show(v, types.get(n).copied())))
            })
            .collect();
        env.values.insert(&clause.name, Value::Bool(held));
        clauses.push(ClauseOutcome {
            name: clause.name.clone(),
            held,
            values,
        });
    }
    let eligible = clauses.iter().all(|c| c.held);
    let mut decision = Decision {
        eligible,
        clauses,
        base_amount: None,
        exception: None,
        amount: None,
    };
    if eligible && let Some(amount) = &policy.amount {
        decision.base_amount = fen(env.eval(amount)?)?;
        decision.amount = decision.base_amount;
        // An exception overrides the base rule (the first that applies).
        for ex in &policy.exceptions {
            if env.eval(&ex.when)? == Value::Bool(true) {
                decision.exception = Some(ex.name.clone());
                decision.amount = fen(env.eval(&ex.amount)?)?;
                break;
            }
        }
    }
    Ok(decision)
}

/// The value of a literal-only expression (test facts and expectations).
pub fn constant(e: &Expr) -> Result<Value, EvalError> {
    Env {
        values: HashMap::new(),
    }
    .eval(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_exact_and_as_named() {
        let r = |n, d| Ratio::checked(n, d).unwrap();
        assert_eq!(r(7, 2).round("round_down"), 3);
        assert_eq!(r(7, 2).round("round_up"), 4);
        assert_eq!(r(7, 2).round("round_half_even"), 4);
        assert_eq!(r(5, 2).round("round_half_even"), 2);
        assert_eq!(r(-7, 2).round("round_down"), -4);
        assert_eq!(r(10, 5).round("round_up"), 2);
        // 0.1 + 0.2 == 0.3 exactly.
        assert_eq!(r(1, 10).add(r(2, 10)), Some(r(3, 10)));
    }

    #[test]
    fn yuan_reads_as_an_official_writes_it() {
        assert_eq!(yuan(Fen(123_456_789)), "¥1,234,567.89");
        assert_eq!(yuan(Fen(5)), "¥0.05");
        assert_eq!(yuan(Fen(-100_000)), "-¥1,000.00");
    }

    #[test]
    fn overflow_is_an_error_never_a_wrapped_amount() {
        let big = Ratio::int(i128::MAX / 2);
        assert_eq!(big.mul(Ratio::int(4)), None);
        assert_eq!(big.add(big).and_then(|x| x.add(big)), None);
    }
}
