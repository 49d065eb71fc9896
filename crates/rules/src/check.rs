//! The type checker: every name known, every operation defined on its operands' types, money
//! never compared with a date, no division without a guard, amounts in whole fen. It reports
//! every problem it finds, with its position, and never stops at the first.

use std::collections::{HashMap, HashSet};

use crate::syntax::{Diagnostic, Expect, Expr, ExprKind, Lit, PolicyAst, Pos, Type};

struct Checker<'a> {
    names: HashMap<&'a str, Type>,
    diags: Vec<Diagnostic>,
}

fn money(t: Type) -> bool {
    matches!(t, Type::Money | Type::MoneyExact)
}

fn number(t: Type) -> bool {
    matches!(t, Type::Int | Type::Rate)
}

/// The common type of two branches or arguments of the same kind.
fn join(a: Type, b: Type) -> Option<Type> {
    Some(match (a, b) {
        _ if a == b => a,
        (x, y) if money(x) && money(y) => Type::MoneyExact,
        (x, y) if number(x) && number(y) => Type::Rate,
        _ => return None,
    })
}

fn is_zero_literal(e: &Expr) -> bool {
    matches!(
        &e.kind,
        ExprKind::Lit(Lit::Int(0)) | ExprKind::Lit(Lit::Money(0))
    ) || matches!(&e.kind, ExprKind::Lit(Lit::Rate(d)) if d.num == 0)
}

impl<'a> Checker<'a> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) -> Option<Type> {
        self.diags.push(Diagnostic {
            pos,
            message: message.into(),
        });
        None
    }

    fn expr(&mut self, e: &'a Expr, guarded: &HashSet<&'a str>) -> Option<Type> {
        match &e.kind {
            ExprKind::Lit(l) => Some(match l {
                Lit::Int(_) => Type::Int,
                Lit::Money(_) => Type::Money,
                Lit::Rate(_) => Type::Rate,
                Lit::Bool(_) => Type::Bool,
                Lit::Text(_) => Type::Text,
                Lit::Date(_) => Type::Date,
            }),
            ExprKind::Name(n) => match self.names.get(n.as_str()) {
                Some(t) => Some(*t),
                None => {
                    let mut known: Vec<&str> = self.names.keys().copied().collect();
                    known.sort_unstable();
                    self.err(
                        e.pos,
                        format!("unknown name {n:?} (known: {})", known.join(", ")),
                    )
                }
            },
            ExprKind::Unary(op, x) => {
                let t = self.expr(x, guarded)?;
                match (*op, t) {
                    ("not", Type::Bool) => Some(Type::Bool),
                    ("-", t) if money(t) || number(t) => Some(t),
                    _ => self.err(e.pos, format!("'{op}' is not defined on {}", t.name())),
                }
            }
            ExprKind::Binary(op, a, b) => {
                // `if x > 0 then .. / x ..` guards x; the guard is read in `If`.
                let (ta, tb) = (self.expr(a, guarded), self.expr(b, guarded));
                let (ta, tb) = (ta?, tb?);
                let bad = |c: &mut Self| {
                    c.err(
                        e.pos,
                        format!(
                            "'{op}' is not defined between {} and {}",
                            ta.name(),
                            tb.name()
                        ),
                    )
                };
                match *op {
                    "and" | "or" => {
                        if ta == Type::Bool && tb == Type::Bool {
                            Some(Type::Bool)
                        } else {
                            bad(self)
                        }
                    }
                    "==" | "!=" => {
                        if join(ta, tb).is_some() {
                            Some(Type::Bool)
                        } else {
                            self.err(
                                e.pos,
                                format!("cannot compare {} with {}", ta.name(), tb.name()),
                            )
                        }
                    }
                    "<" | "<=" | ">" | ">=" => match join(ta, tb) {
                        Some(t) if t != Type::Bool && t != Type::Text => Some(Type::Bool),
                        _ => self.err(
                            e.pos,
                            format!("cannot order {} against {}", ta.name(), tb.name()),
                        ),
                    },
                    "+" | "-" => match (ta, tb) {
                        (Type::Date, Type::Date) if *op == "-" => Some(Type::Int),
                        (Type::Date, Type::Int) => Some(Type::Date),
                        (x, y) if (money(x) && money(y)) || (number(x) && number(y)) => join(x, y),
                        _ => bad(self),
                    },
                    "*" => match (ta, tb) {
                        (Type::Money, Type::Int) | (Type::Int, Type::Money) => Some(Type::Money),
                        (x, y) if (money(x) && number(y)) || (number(x) && money(y)) => {
                            Some(Type::MoneyExact)
                        }
                        (Type::Int, Type::Int) => Some(Type::Int),
                        (x, y) if number(x) && number(y) => Some(Type::Rate),
                        _ => bad(self),
                    },
                    "/" => {
                        let safe = match &b.kind {
                            ExprKind::Lit(_) => !is_zero_literal(b),
                            ExprKind::Name(n) => guarded.contains(n.as_str()),
                            _ => false,
                        };
                        if !safe {
                            self.err(
                                b.pos,
                                "a division needs a guard: divide by a non-zero literal, or by a name inside `if NAME > 0 then ... else ...`",
                            );
                        }
                        match (ta, tb) {
                            (x, y) if money(x) && number(y) => Some(Type::MoneyExact),
                            (x, y) if money(x) && money(y) => Some(Type::Rate),
                            (x, y) if number(x) && number(y) => Some(Type::Rate),
                            _ => bad(self),
                        }
                    }
                    _ => bad(self),
                }
            }
            ExprKind::Call(f, args) => {
                let types: Vec<Option<Type>> = args.iter().map(|a| self.expr(a, guarded)).collect();
                let types: Vec<Type> = types.into_iter().collect::<Option<_>>()?;
                match f.as_str() {
                    "min" | "max" => {
                        if types.len() < 2 {
                            return self.err(e.pos, format!("{f} takes two or more values"));
                        }
                        let mut t = types[0];
                        for u in &types[1..] {
                            match join(t, *u) {
                                Some(j) if j != Type::Bool && j != Type::Text => t = j,
                                _ => {
                                    return self.err(
                                        e.pos,
                                        format!("{f} of {} and {}", t.name(), u.name()),
                                    );
                                }
                            }
                        }
                        Some(t)
                    }
                    "round_down" | "round_up" | "round_half_even" => {
                        if types.len() == 1 && money(types[0]) {
                            Some(Type::Money)
                        } else {
                            self.err(e.pos, format!("{f} takes one money value"))
                        }
                    }
                    _ => self.err(
                        e.pos,
                        format!("unknown function {f:?} (min, max, round_down, round_up, round_half_even)"),
                    ),
                }
            }
            ExprKind::If(c, a, b) => {
                let tc = self.expr(c, guarded);
                if tc.is_some_and(|t| t != Type::Bool) {
                    self.err(c.pos, "the condition of an if is a bool");
                }
                let mut then_guarded = guarded.clone();
                if let ExprKind::Binary(op, x, z) = &c.kind
                    && (*op == ">" || *op == "!=")
                    && is_zero_literal(z)
                    && let ExprKind::Name(n) = &x.kind
                {
                    then_guarded.insert(n.as_str());
                }
                let (ta, tb) = (self.expr(a, &then_guarded), self.expr(b, guarded));
                let (ta, tb) = (ta?, tb?);
                join(ta, tb).or_else(|| {
                    self.err(
                        e.pos,
                        format!(
                            "the branches of an if differ: {} and {}",
                            ta.name(),
                            tb.name()
                        ),
                    )
                })
            }
        }
    }

    fn amount(&mut self, e: &'a Expr, what: &str) {
        match self.expr(e, &HashSet::new()) {
            Some(Type::Money) | None => {}
            Some(Type::MoneyExact) => {
                self.err(
                    e.pos,
                    format!("{what} may fall between fen: say how to round it with round_down(...), round_up(...) or round_half_even(...)"),
                );
            }
            Some(t) => {
                self.err(e.pos, format!("{what} is money, not {}", t.name()));
            }
        }
    }
}

/// Checks a parsed policy; returns every problem.
pub fn check(p: &PolicyAst) -> Vec<Diagnostic> {
    let mut c = Checker {
        names: HashMap::new(),
        diags: Vec::new(),
    };
    let top = Pos { line: 1, col: 1 };
    for (missing, what) in [
        (p.id.is_empty(), "policy ID"),
        (p.title.is_empty(), "title \"...\""),
        (p.department.is_empty(), "department ID"),
        (p.basis.is_empty(), "basis \"...\" (the legal basis)"),
        (p.effective.is_none(), "effective YYYY-MM-DD to YYYY-MM-DD"),
        (p.amount.is_none(), "amount: EXPRESSION"),
    ] {
        if missing {
            c.err(top, format!("the policy has no `{what}` line"));
        }
    }
    if let Some((from, to)) = p.effective
        && to < from
    {
        c.err(top, "the policy's effective period ends before it starts");
    }
    for input in &p.inputs {
        if c.names.insert(&input.name, input.ty).is_some() {
            c.err(input.pos, format!("{} is declared twice", input.name));
        }
    }
    for param in &p.params {
        for v in &param.values {
            if let Some(t) = c.expr(&v.value, &HashSet::new())
                && t != param.ty
                && !(param.ty == Type::Rate && t == Type::Int)
            {
                c.err(
                    v.value.pos,
                    format!(
                        "parameter {} is {}, this value is {}",
                        param.name,
                        param.ty.name(),
                        t.name()
                    ),
                );
            }
        }
        let dates: Vec<_> = param.values.iter().filter_map(|v| v.from).collect();
        if dates.windows(2).any(|w| w[1] <= w[0]) {
            c.err(
                param.pos,
                format!(
                    "parameter {}'s dated values are not in date order",
                    param.name
                ),
            );
        }
        if c.names.insert(&param.name, param.ty).is_some() {
            c.err(param.pos, format!("{} is declared twice", param.name));
        }
    }
    for clause in &p.clauses {
        match c.expr(&clause.expr, &HashSet::new()) {
            Some(Type::Bool) | None => {}
            Some(t) => {
                c.err(
                    clause.expr.pos,
                    format!(
                        "clause {} must be true or false, not {}",
                        clause.name,
                        t.name()
                    ),
                );
            }
        }
        if c.names.insert(&clause.name, Type::Bool).is_some() {
            c.err(clause.pos, format!("{} is declared twice", clause.name));
        }
    }
    if let Some(budget) = &p.budget {
        c.amount(budget, "the budget");
    }
    if let Some(amount) = &p.amount {
        c.amount(amount, "the amount");
    }
    for ex in &p.exceptions {
        if c.expr(&ex.when, &HashSet::new())
            .is_some_and(|t| t != Type::Bool)
        {
            c.err(
                ex.when.pos,
                format!("exception {}: its condition is a bool", ex.name),
            );
        }
        c.amount(&ex.amount, &format!("exception {}'s amount", ex.name));
    }
    let inputs: HashMap<&str, Type> = p.inputs.iter().map(|i| (i.name.as_str(), i.ty)).collect();
    for test in &p.tests {
        for (name, value) in &test.given {
            match inputs.get(name.as_str()) {
                None => {
                    c.err(
                        value.pos,
                        format!("test {:?}: {name} is not an input", test.name),
                    );
                }
                Some(ty) => {
                    if let Some(t) = c.expr(value, &HashSet::new())
                        && t != *ty
                        && !(*ty == Type::Rate && t == Type::Int)
                    {
                        c.err(
                            value.pos,
                            format!(
                                "test {:?}: {name} is {}, given {}",
                                test.name,
                                ty.name(),
                                t.name()
                            ),
                        );
                    }
                }
            }
        }
        for input in &p.inputs {
            if !test.given.iter().any(|(n, _)| n == &input.name) {
                c.err(
                    test.pos,
                    format!("test {:?} does not give {}", test.name, input.name),
                );
            }
        }
        for e in &test.expect {
            match e {
                Expect::FailedClause(name) if !p.clauses.iter().any(|cl| &cl.name == name) => {
                    c.err(test.pos, format!("test {:?}: no clause {name}", test.name));
                }
                Expect::Amount(x) => {
                    c.amount(x, &format!("test {:?}'s expected amount", test.name))
                }
                _ => {}
            }
        }
    }
    c.diags.sort_by_key(|d| d.pos);
    c.diags
}
