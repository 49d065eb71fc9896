//! The two evaluators agree exactly: random well-typed rules over random enterprises, every
//! decision (eligibility, amount to the fen, or the error) the same from the interpreter and
//! from the batch evaluator on two threads, and from the fast evaluator (fixed-point, in
//! blocks, with the interpreter for the rows it flags).

use std::collections::HashMap;

use citybrain_core::Date;
use citybrain_rules::batch::{Column, Outcome, decide_all};
use citybrain_rules::eval::{Ratio, Value};
use citybrain_rules::fast;
use citybrain_rules::syntax::{
    Clause, Decimal, Exception, Expr, ExprKind, Input, Lit, PolicyAst, Pos, Type,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

fn e(kind: ExprKind) -> Expr {
    Expr {
        kind,
        pos: Pos::default(),
    }
}
fn name(n: &str) -> Expr {
    e(ExprKind::Name(n.into()))
}
fn bin(op: &'static str, a: Expr, b: Expr) -> Expr {
    e(ExprKind::Binary(op, Box::new(a), Box::new(b)))
}
fn call(f: &str, args: Vec<Expr>) -> Expr {
    e(ExprKind::Call(f.into(), args))
}
fn iff(c: Expr, a: Expr, b: Expr) -> Expr {
    e(ExprKind::If(Box::new(c), Box::new(a), Box::new(b)))
}

fn money(r: &mut Rng, d: u32) -> Expr {
    let leaf = d == 0 || r.below(3) == 0;
    if leaf {
        return match r.below(3) {
            0 => name("a"),
            1 => name("b"),
            _ => e(ExprKind::Lit(Lit::Money(i128::from(
                r.int(-500_000, 5_000_000),
            )))),
        };
    }
    match r.below(7) {
        0 => bin("+", money(r, d - 1), money(r, d - 1)),
        1 => bin("-", money(r, d - 1), money(r, d - 1)),
        2 => bin("*", money(r, d - 1), int(r, d - 1)),
        3 => {
            let how = ["round_down", "round_up", "round_half_even"][r.below(3) as usize];
            call(how, vec![exact(r, d - 1)])
        }
        4 => call(
            if r.below(2) == 0 { "min" } else { "max" },
            vec![money(r, d - 1), money(r, d - 1)],
        ),
        _ => iff(boolean(r, d - 1), money(r, d - 1), money(r, d - 1)),
    }
}

/// Money that may fall between fen.
fn exact(r: &mut Rng, d: u32) -> Expr {
    match r.below(3) {
        0 => bin(
            "*",
            money(r, d.saturating_sub(1)),
            rate(r, d.saturating_sub(1)),
        ),
        1 => {
            let divisor = if r.below(2) == 0 { "n" } else { "k" };
            iff(
                bin(">", name(divisor), e(ExprKind::Lit(Lit::Int(0)))),
                bin("/", money(r, d.saturating_sub(1)), name(divisor)),
                money(r, d.saturating_sub(1)),
            )
        }
        _ => bin(
            "+",
            money(r, d.saturating_sub(1)),
            bin("*", money(r, 0), rate(r, 0)),
        ),
    }
}

fn int(r: &mut Rng, d: u32) -> Expr {
    if d == 0 || r.below(2) == 0 {
        return match r.below(3) {
            0 => name("n"),
            1 => name("k"),
            _ => e(ExprKind::Lit(Lit::Int(i128::from(r.int(-5, 300))))),
        };
    }
    match r.below(3) {
        0 => bin("+", int(r, d - 1), int(r, d - 1)),
        1 => bin("*", int(r, d - 1), int(r, d - 1)),
        _ => bin("-", int(r, d - 1), int(r, d - 1)),
    }
}

fn rate(r: &mut Rng, d: u32) -> Expr {
    if d == 0 || r.below(2) == 0 {
        return if r.below(2) == 0 {
            name("p")
        } else {
            e(ExprKind::Lit(Lit::Rate(Decimal {
                num: i128::from(r.int(0, 2_000)),
                scale: r.below(4) as u32 + 1,
            })))
        };
    }
    bin("*", rate(r, d - 1), rate(r, d - 1))
}

fn boolean(r: &mut Rng, d: u32) -> Expr {
    let cmp = ["<", "<=", ">", ">=", "==", "!="];
    if d == 0 || r.below(3) == 0 {
        return match r.below(5) {
            0 => name("flag"),
            1 => bin(cmp[r.below(6) as usize], money(r, 0), money(r, 0)),
            2 => bin(cmp[r.below(6) as usize], int(r, 0), int(r, 0)),
            3 => bin(
                "==",
                name("t"),
                e(ExprKind::Lit(Lit::Text(
                    ["tea", "it"][r.below(2) as usize].into(),
                ))),
            ),
            _ => bin(
                "<",
                name("founded"),
                e(ExprKind::Lit(Lit::Date(Date(r.int(18_000, 20_000) as i32)))),
            ),
        };
    }
    match r.below(6) {
        // Guarded divisions, as policies write them (a share of staff, a growth rate).
        4 => iff(
            bin(">", name("k"), e(ExprKind::Lit(Lit::Int(0)))),
            bin(
                ["<=", ">="][r.below(2) as usize],
                bin("/", int(r, 1), name("k")),
                rate(r, 0),
            ),
            e(ExprKind::Lit(Lit::Bool(false))),
        ),
        5 => iff(
            bin(">", name("b"), e(ExprKind::Lit(Lit::Money(0)))),
            bin(
                ">=",
                bin("/", bin("-", name("a"), name("b")), name("b")),
                rate(r, 0),
            ),
            e(ExprKind::Lit(Lit::Bool(r.below(2) == 0))),
        ),
        0 => bin("and", boolean(r, d - 1), boolean(r, d - 1)),
        1 => bin("or", boolean(r, d - 1), boolean(r, d - 1)),
        2 => e(ExprKind::Unary("not", Box::new(boolean(r, d - 1)))),
        _ => bin(cmp[r.below(6) as usize], money(r, d - 1), money(r, d - 1)),
    }
}

fn policy(r: &mut Rng) -> PolicyAst {
    let input = |n: &str, ty| Input {
        name: n.into(),
        ty,
        pos: Pos::default(),
    };
    let mut p = PolicyAst {
        id: "random".into(),
        title: "random".into(),
        department: "market".into(),
        basis: "test".into(),
        effective: Some((Date(19_000), Date(20_000))),
        inputs: vec![
            input("a", Type::Money),
            input("b", Type::Money),
            input("n", Type::Int),
            input("k", Type::Int),
            input("p", Type::Rate),
            input("flag", Type::Bool),
            input("t", Type::Text),
            input("founded", Type::Date),
        ],
        ..PolicyAst::default()
    };
    for c in 0..r.below(3) + 1 {
        p.clauses.push(Clause {
            name: format!("c{c}"),
            expr: boolean(r, 3),
            pos: Pos::default(),
        });
    }
    p.amount = Some(money(r, 4));
    for x in 0..r.below(3) {
        p.exceptions.push(Exception {
            name: format!("x{x}"),
            when: boolean(r, 2),
            amount: money(r, 3),
            pos: Pos::default(),
        });
    }
    p
}

#[test]
fn the_interpreter_and_the_batch_evaluator_agree_on_every_decision() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    // More than one block of the fast evaluator, the last one partial (blocks of 1,024 rows
    // keep the interpreter's share of the test small).
    let block = 1024;
    let rows = block + 300;
    let mut compiled = 0;
    let (mut decisions, mut eligible, mut errors) = (0, 0, 0);
    let mut shared_values = 0;
    for _ in 0..150 {
        let p = policy(&mut r);
        let diags = citybrain_rules::check::check(&p);
        assert!(
            diags.is_empty(),
            "the generator made an ill-typed rule: {diags:?}"
        );
        // Random enterprises, with zeros, negatives and now and then a huge amount.
        let money_col = |r: &mut Rng| {
            (0..rows)
                .map(|_| match r.below(20) {
                    0 => 0,
                    1 => i64::MAX / 3,
                    _ => r.int(-100_000, 50_000_000),
                })
                .collect::<Vec<i64>>()
        };
        let mut columns = HashMap::new();
        columns.insert("a".to_string(), Column::Money(money_col(&mut r)));
        columns.insert("b".to_string(), Column::Money(money_col(&mut r)));
        columns.insert(
            "n".to_string(),
            Column::Int((0..rows).map(|_| r.int(-2, 500)).collect()),
        );
        columns.insert(
            "k".to_string(),
            Column::Int((0..rows).map(|_| r.int(0, 3)).collect()),
        );
        columns.insert(
            "p".to_string(),
            Column::Rate(
                (0..rows)
                    .map(|_| Ratio::checked(r.int(0, 1000) as i128, 1000).unwrap())
                    .collect(),
            ),
        );
        columns.insert(
            "flag".to_string(),
            Column::Bool((0..rows).map(|_| r.below(2) == 0).collect()),
        );
        columns.insert(
            "t".to_string(),
            Column::Text(
                (0..rows)
                    .map(|_| ["tea", "it", "food"][r.below(3) as usize].to_string())
                    .collect(),
            ),
        );
        columns.insert(
            "founded".to_string(),
            Column::Date((0..rows).map(|_| r.int(17_000, 21_000) as i32).collect()),
        );
        let on = Date(19_500);
        let batch = decide_all(&p, &columns, on, 2).unwrap();
        let table = fast::Table::from_columns(&columns).unwrap();
        let plan = fast::Plan::new([(&p, on)], &table).with_block_rows(block);
        compiled += usize::from(plan.not_compiled().is_empty());
        let mut quick: Vec<_> = fast::run(&plan, &table, 2, fast::Collect::default)
            .into_iter()
            .flat_map(|c| c.decisions)
            .collect();
        quick.sort_by_key(|d| d.1);
        assert_eq!(quick.len(), rows);
        for (i, got) in batch.iter().enumerate() {
            let mut facts = HashMap::new();
            for (k, c) in &columns {
                let v = match c {
                    Column::Int(v) | Column::Money(v) => Value::Num(Ratio::int(i128::from(v[i]))),
                    Column::Rate(v) => Value::Num(v[i]),
                    Column::Bool(v) => Value::Bool(v[i]),
                    Column::Text(v) => Value::Text(v[i].clone()),
                    Column::Date(v) => Value::Date(Date(v[i])),
                };
                facts.insert(k.clone(), v);
            }
            let want = citybrain_rules::decide(&p, &facts, on).map(|d| Outcome {
                eligible: d.eligible,
                amount: d.amount,
            });
            assert_eq!(got, &want, "row {i} of rule {p:#?}");
            assert_eq!(
                quick[i].2,
                want,
                "fast evaluator, row {i} of rule {p:#?} ({:?})",
                plan.not_compiled()
            );
            decisions += 1;
            match want {
                Ok(o) if o.eligible => eligible += 1,
                Err(_) => errors += 1,
                _ => {}
            }
        }
        // Several policies in one plan, as a programme's variants: the same first clauses,
        // then one more, a different amount; and the first again. Each decides as alone.
        let mut variant = p.clone();
        variant.clauses.push(Clause {
            name: "extra".into(),
            expr: boolean(&mut r, 2),
            pos: Pos::default(),
        });
        variant.amount = Some(money(&mut r, 3));
        let programme = [&p, &variant, &p];
        let plan =
            fast::Plan::new(programme.iter().map(|x| (*x, on)), &table).with_block_rows(block);
        shared_values += plan.shared_values();
        let mut all: Vec<_> = fast::run(&plan, &table, 2, fast::Collect::default)
            .into_iter()
            .flat_map(|c| c.decisions)
            .collect();
        all.sort_by_key(|d| (d.0, d.1));
        assert_eq!(all.len(), 3 * rows);
        for (k, policy) in programme.iter().enumerate() {
            for i in 0..rows {
                let mut facts = HashMap::new();
                for (name, c) in &columns {
                    let v = match c {
                        Column::Int(v) | Column::Money(v) => {
                            Value::Num(Ratio::int(i128::from(v[i])))
                        }
                        Column::Rate(v) => Value::Num(v[i]),
                        Column::Bool(v) => Value::Bool(v[i]),
                        Column::Text(v) => Value::Text(v[i].clone()),
                        Column::Date(v) => Value::Date(Date(v[i])),
                    };
                    facts.insert(name.clone(), v);
                }
                let want = citybrain_rules::decide(policy, &facts, on).map(|d| Outcome {
                    eligible: d.eligible,
                    amount: d.amount,
                });
                assert_eq!(
                    all[k * rows + i].2,
                    want,
                    "policy {k} of a programme, row {i}"
                );
            }
        }
    }
    // The programmes computed values once for several places (the first policy twice).
    assert!(shared_values >= 150, "{shared_values} values shared");
    // The fast evaluator compiled the rules itself (rather than handing them on).
    assert!(compiled >= 140, "only {compiled} of 150 rules compiled");
    // The generator exercised all three outcomes.
    assert!(eligible > decisions / 20, "{eligible} of {decisions}");
    assert!(decisions - eligible - errors > decisions / 20);
    assert!(errors > 0, "no overflow was provoked");
}
