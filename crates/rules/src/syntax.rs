//! The rule language's surface: tokens with positions, and a parser into the AST that keeps
//! going after an error so that every problem in a file is reported at once.
//!
//! A policy file is a list of statements, each starting a line with a keyword:
//!
//! ```text
//! policy rd_subsidy
//! title "R&D expense subsidy"
//! department market
//! basis "Hangzhou S&T Bureau [2024] No. 12, art. 3"
//! effective 2025-01-01 to 2026-12-31
//! budget 50000000.00 yuan
//! input rd_expense: money             # a fact about the enterprise
//! param rate: rate = 10%
//! param rate from 2026-01-01 = 12%    # a new value from a date on
//! clause spends_on_rd: rd_expense > 0 yuan
//! amount: round_down(rd_expense * rate)
//! exception high_tech when high_tech: round_down(rd_expense * 15%)
//! test "a firm that spends"
//!   given rd_expense = 1000000.00 yuan
//!   expect eligible, amount 100000.00 yuan
//! ```

use citybrain_core::Date;

/// A position in a file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
}

/// An exact decimal: `num / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub num: i128,
    pub scale: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    /// A number as written (digits and at most one point).
    Num(Decimal),
    Date(Date),
    Sym(&'static str),
    Newline,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

const SYMBOLS: [&str; 16] = [
    "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", ",", ":", "=", "%",
];

pub fn lex(text: &str, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let pos = |i: usize| Pos {
            line: n as u32 + 1,
            col: i as u32 + 1,
        };
        while i < chars.len() {
            let c = chars[i];
            if c == '#' {
                break;
            }
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            if c == '"' {
                i += 1;
                let mut s = String::new();
                while i < chars.len() && chars[i] != '"' {
                    s.push(chars[i]);
                    i += 1;
                }
                if i == chars.len() {
                    diags.push(Diagnostic {
                        pos: pos(start),
                        message: "a string is not closed on its line".into(),
                    });
                } else {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Str(s),
                    pos: pos(start),
                });
                continue;
            }
            if c.is_ascii_digit() {
                while i < chars.len()
                    && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '-')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let tok = if word.matches('-').count() == 2 {
                    match Date::parse(&word) {
                        Ok(d) => Tok::Date(d),
                        Err(_) => {
                            diags.push(Diagnostic {
                                pos: pos(start),
                                message: format!("{word:?} is not a date (YYYY-MM-DD)"),
                            });
                            Tok::Date(Date(0))
                        }
                    }
                } else {
                    match parse_decimal(&word) {
                        Some(d) => Tok::Num(d),
                        None => {
                            diags.push(Diagnostic {
                                pos: pos(start),
                                message: format!("{word:?} is not a number"),
                            });
                            Tok::Num(Decimal { num: 0, scale: 0 })
                        }
                    }
                };
                out.push(Token {
                    tok,
                    pos: pos(start),
                });
                continue;
            }
            if c.is_alphabetic() || c == '_' {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(chars[start..i].iter().collect()),
                    pos: pos(start),
                });
                continue;
            }
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            if let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                i += sym.chars().count();
                out.push(Token {
                    tok: Tok::Sym(sym),
                    pos: pos(start),
                });
                continue;
            }
            diags.push(Diagnostic {
                pos: pos(start),
                message: format!("unexpected character {c:?}"),
            });
            i += 1;
        }
        out.push(Token {
            tok: Tok::Newline,
            pos: pos(chars.len()),
        });
    }
    out
}

/// Parses `123` or `123.45` exactly.
pub fn parse_decimal(word: &str) -> Option<Decimal> {
    let (int, frac) = word.split_once('.').unwrap_or((word, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 12
    {
        return None;
    }
    let num: i128 = format!("{int}{frac}").parse().ok()?;
    Some(Decimal {
        num,
        scale: frac.len() as u32,
    })
}

/// Types of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int,
    /// Integer fen.
    Money,
    /// Money that may fall between fen (after a rate or a division): must be rounded.
    MoneyExact,
    /// A decimal ratio (`10%`, `0.125`).
    Rate,
    Bool,
    Text,
    Date,
}

impl Type {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "int" => Self::Int,
            "money" => Self::Money,
            "rate" => Self::Rate,
            "bool" => Self::Bool,
            "text" => Self::Text,
            "date" => Self::Date,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Money => "money",
            Self::MoneyExact => "money (unrounded)",
            Self::Rate => "rate",
            Self::Bool => "bool",
            Self::Text => "text",
            Self::Date => "date",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Int(i128),
    /// In fen (exact: a literal must be whole fen).
    Money(i128),
    Rate(Decimal),
    Bool(bool),
    Text(String),
    Date(Date),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Lit(Lit),
    Name(String),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub ty: Type,
    pub pos: Pos,
}

/// A parameter's value from a date on (`None`: from the start).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue {
    pub from: Option<Date>,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: Type,
    pub values: Vec<ParamValue>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub name: String,
    pub expr: Expr,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exception {
    pub name: String,
    pub when: Expr,
    pub amount: Expr,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Eligible(bool),
    /// Not eligible because this clause failed.
    FailedClause(String),
    Amount(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub name: String,
    pub on: Option<Date>,
    pub given: Vec<(String, Expr)>,
    pub expect: Vec<Expect>,
    pub pos: Pos,
}

/// How a budget is shared when the eligible amounts exceed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BudgetRule {
    /// Every amount scaled down alike, to the fen, so the budget is paid out exactly.
    #[default]
    ProRata,
    /// In order of application: in full while the budget lasts.
    FirstCome,
}

/// A policy as written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyAst {
    pub id: String,
    pub title: String,
    pub department: String,
    pub basis: String,
    pub effective: Option<(Date, Date)>,
    pub budget: Option<Expr>,
    /// How the budget is shared when the eligible amounts exceed it.
    pub budget_rule: BudgetRule,
    pub inputs: Vec<Input>,
    pub params: Vec<Param>,
    pub clauses: Vec<Clause>,
    pub amount: Option<Expr>,
    pub exceptions: Vec<Exception>,
    pub tests: Vec<Test>,
    pub pos: Pos,
}

struct Parser<'a> {
    toks: &'a [Token],
    at: usize,
    diags: &'a mut Vec<Diagnostic>,
}

type PResult<T> = Result<T, ()>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].tok
    }
    fn pos(&self) -> Pos {
        self.toks[self.at.min(self.toks.len() - 1)].pos
    }
    fn bump(&mut self) -> Token {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        if self.at < self.toks.len() {
            self.at += 1;
        }
        t
    }
    fn error<T>(&mut self, message: impl Into<String>) -> PResult<T> {
        self.diags.push(Diagnostic {
            pos: self.pos(),
            message: message.into(),
        });
        Err(())
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == w)
    }
    fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.is_sym(s) {
            self.bump();
            Ok(())
        } else {
            self.error(format!("expected '{s}'"))
        }
    }
    fn expect_word(&mut self, w: &str) -> PResult<()> {
        if self.is_word(w) {
            self.bump();
            Ok(())
        } else {
            self.error(format!("expected '{w}'"))
        }
    }
    fn ident(&mut self, what: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Ok(s)
            }
            _ => self.error(format!("expected {what}")),
        }
    }
    fn string(&mut self, what: &str) -> PResult<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => self.error(format!("expected {what} in double quotes")),
        }
    }
    fn date(&mut self) -> PResult<Date> {
        match self.peek().clone() {
            Tok::Date(d) => {
                self.bump();
                Ok(d)
            }
            _ => self.error("expected a date (YYYY-MM-DD)"),
        }
    }
    fn end_of_line(&mut self) -> PResult<()> {
        if matches!(self.peek(), Tok::Newline) {
            self.bump();
            Ok(())
        } else {
            self.error("expected the end of the line")
        }
    }
    fn skip_line(&mut self) {
        while self.at < self.toks.len() && !matches!(self.peek(), Tok::Newline) {
            self.bump();
        }
        if self.at < self.toks.len() {
            self.bump();
        }
    }
    fn ty(&mut self) -> PResult<Type> {
        let name = self.ident("a type")?;
        match Type::parse(&name) {
            Some(t) => Ok(t),
            None => self.error(format!(
                "unknown type {name:?} (int, money, rate, bool, text, date)"
            )),
        }
    }

    // Expressions, loosest first.
    fn expr(&mut self) -> PResult<Expr> {
        if self.is_word("if") {
            let pos = self.bump().pos;
            let c = self.expr()?;
            self.expect_word("then")?;
            let a = self.expr()?;
            self.expect_word("else")?;
            let b = self.expr()?;
            return Ok(Expr {
                kind: ExprKind::If(Box::new(c), Box::new(a), Box::new(b)),
                pos,
            });
        }
        self.or()
    }
    fn binary_level(
        &mut self,
        ops: &[&'static str],
        words: bool,
        next: fn(&mut Self) -> PResult<Expr>,
    ) -> PResult<Expr> {
        let mut left = next(self)?;
        loop {
            let op = ops.iter().copied().find(|op| {
                if words {
                    self.is_word(op)
                } else {
                    self.is_sym(op)
                }
            });
            let Some(op) = op else { return Ok(left) };
            let pos = self.bump().pos;
            let right = next(self)?;
            left = Expr {
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
                pos,
            };
        }
    }
    fn or(&mut self) -> PResult<Expr> {
        self.binary_level(&["or"], true, Self::and)
    }
    fn and(&mut self) -> PResult<Expr> {
        self.binary_level(&["and"], true, Self::not)
    }
    fn not(&mut self) -> PResult<Expr> {
        if self.is_word("not") {
            let pos = self.bump().pos;
            let e = self.not()?;
            return Ok(Expr {
                kind: ExprKind::Unary("not", Box::new(e)),
                pos,
            });
        }
        self.compare()
    }
    fn compare(&mut self) -> PResult<Expr> {
        self.binary_level(&["==", "!=", "<=", ">=", "<", ">"], false, Self::sum)
    }
    fn sum(&mut self) -> PResult<Expr> {
        self.binary_level(&["+", "-"], false, Self::product)
    }
    fn product(&mut self) -> PResult<Expr> {
        self.binary_level(&["*", "/"], false, Self::unary)
    }
    fn unary(&mut self) -> PResult<Expr> {
        if self.is_sym("-") {
            let pos = self.bump().pos;
            let e = self.unary()?;
            return Ok(Expr {
                kind: ExprKind::Unary("-", Box::new(e)),
                pos,
            });
        }
        self.atom()
    }
    fn atom(&mut self) -> PResult<Expr> {
        let pos = self.pos();
        let lit = |l| {
            Ok(Expr {
                kind: ExprKind::Lit(l),
                pos,
            })
        };
        match self.peek().clone() {
            Tok::Num(d) => {
                self.bump();
                if self.is_sym("%") {
                    self.bump();
                    return lit(Lit::Rate(Decimal {
                        num: d.num,
                        scale: d.scale + 2,
                    }));
                }
                if self.is_word("yuan") || self.is_word("fen") {
                    let unit = self.ident("a unit")?;
                    let fen = if unit == "yuan" {
                        if d.scale > 2 {
                            return self.error(
                                "a money amount is in whole fen: at most two decimals of yuan",
                            );
                        }
                        d.num * 10i128.pow(2 - d.scale)
                    } else {
                        if d.scale > 0 {
                            return self.error("fen are whole");
                        }
                        d.num
                    };
                    return lit(Lit::Money(fen));
                }
                if d.scale == 0 {
                    lit(Lit::Int(d.num))
                } else {
                    lit(Lit::Rate(d))
                }
            }
            Tok::Str(s) => {
                self.bump();
                lit(Lit::Text(s))
            }
            Tok::Date(d) => {
                self.bump();
                lit(Lit::Date(d))
            }
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "true" => return lit(Lit::Bool(true)),
                    "false" => return lit(Lit::Bool(false)),
                    _ => {}
                }
                if self.is_sym("(") {
                    self.bump();
                    let mut args = Vec::new();
                    if !self.is_sym(")") {
                        loop {
                            args.push(self.expr()?);
                            if self.is_sym(",") {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                    }
                    self.expect_sym(")")?;
                    return Ok(Expr {
                        kind: ExprKind::Call(name, args),
                        pos,
                    });
                }
                Ok(Expr {
                    kind: ExprKind::Name(name),
                    pos,
                })
            }
            Tok::Sym("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            _ => self.error("expected a value, a name or '('"),
        }
    }

    fn statement(&mut self, p: &mut PolicyAst) -> PResult<()> {
        let pos = self.pos();
        let keyword = self.ident(
            "a statement (policy, title, input, param, clause, amount, exception, test, ...)",
        )?;
        match keyword.as_str() {
            "policy" => {
                p.id = self.ident("the policy's id")?;
                p.pos = pos;
            }
            "title" => p.title = self.string("the title")?,
            "department" => p.department = self.ident("the issuing department's id")?,
            "basis" => p.basis = self.string("the legal basis")?,
            "effective" => {
                let from = self.date()?;
                self.expect_word("to")?;
                let to = self.date()?;
                p.effective = Some((from, to));
            }
            "budget" => {
                p.budget = Some(self.expr()?);
                if self.is_word("pro_rata") {
                    self.bump();
                    p.budget_rule = BudgetRule::ProRata;
                } else if self.is_word("first_come") {
                    self.bump();
                    p.budget_rule = BudgetRule::FirstCome;
                } else if !matches!(self.peek(), Tok::Newline) {
                    return self.error("after the budget: pro_rata or first_come (how it is shared when claims exceed it)");
                }
            }
            "input" => {
                let name = self.ident("the input's name")?;
                self.expect_sym(":")?;
                let ty = self.ty()?;
                p.inputs.push(Input { name, ty, pos });
            }
            "param" => {
                let name = self.ident("the parameter's name")?;
                if self.is_word("from") {
                    self.bump();
                    let from = self.date()?;
                    self.expect_sym("=")?;
                    let value = self.expr()?;
                    match p.params.iter_mut().find(|q| q.name == name) {
                        Some(q) => q.values.push(ParamValue {
                            from: Some(from),
                            value,
                        }),
                        None => {
                            return self.error(format!(
                                "parameter {name} gets a dated value before its declaration (param {name}: TYPE = VALUE)"
                            ));
                        }
                    }
                } else {
                    self.expect_sym(":")?;
                    let ty = self.ty()?;
                    self.expect_sym("=")?;
                    let value = self.expr()?;
                    p.params.push(Param {
                        name,
                        ty,
                        values: vec![ParamValue { from: None, value }],
                        pos,
                    });
                }
            }
            "clause" => {
                let name = self.ident("the clause's name")?;
                self.expect_sym(":")?;
                let expr = self.expr()?;
                p.clauses.push(Clause { name, expr, pos });
            }
            "amount" => {
                self.expect_sym(":")?;
                p.amount = Some(self.expr()?);
            }
            "exception" => {
                let name = self.ident("the exception's name")?;
                self.expect_word("when")?;
                let when = self.expr()?;
                self.expect_sym(":")?;
                let amount = self.expr()?;
                p.exceptions.push(Exception {
                    name,
                    when,
                    amount,
                    pos,
                });
            }
            "test" => {
                let name = self.string("the test's name")?;
                let mut on = None;
                if self.is_word("on") {
                    self.bump();
                    on = Some(self.date()?);
                }
                p.tests.push(Test {
                    name,
                    on,
                    given: Vec::new(),
                    expect: Vec::new(),
                    pos,
                });
            }
            "given" | "expect" => {
                if p.tests.is_empty() {
                    return self.error(format!("'{keyword}' belongs under a 'test'"));
                }
                let index = p.tests.len() - 1;
                loop {
                    if keyword == "given" {
                        let name = self.ident("an input's name")?;
                        self.expect_sym("=")?;
                        let value = self.expr()?;
                        p.tests[index].given.push((name, value));
                    } else if self.is_word("eligible") {
                        self.bump();
                        p.tests[index].expect.push(Expect::Eligible(true));
                    } else if self.is_word("not") {
                        self.bump();
                        self.expect_word("eligible")?;
                        if self.is_word("because") {
                            self.bump();
                            let clause = self.ident("a clause's name")?;
                            p.tests[index].expect.push(Expect::FailedClause(clause));
                        } else {
                            p.tests[index].expect.push(Expect::Eligible(false));
                        }
                    } else if self.is_word("amount") {
                        self.bump();
                        let e = self.expr()?;
                        p.tests[index].expect.push(Expect::Amount(e));
                    } else {
                        return self.error("expected 'eligible', 'not eligible [because CLAUSE]' or 'amount VALUE'");
                    }
                    if self.is_sym(",") {
                        self.bump();
                    } else {
                        break;
                    }
                }
            }
            other => {
                self.diags.push(Diagnostic {
                    pos,
                    message: format!(
                        "unknown statement {other:?} (policy, title, department, basis, effective, budget, input, param, clause, amount, exception, test, given, expect)"
                    ),
                });
                return Err(());
            }
        }
        self.end_of_line()
    }
}

/// Parses a policy file; every syntax error is in `diags`, and the statements that parsed
/// are kept so that checking can go on.
pub fn parse(text: &str, diags: &mut Vec<Diagnostic>) -> PolicyAst {
    let toks = lex(text, diags);
    let mut p = PolicyAst::default();
    let mut parser = Parser {
        toks: &toks,
        at: 0,
        diags,
    };
    while parser.at < toks.len() {
        if matches!(parser.peek(), Tok::Newline) {
            parser.bump();
            continue;
        }
        if parser.statement(&mut p).is_err() {
            parser.skip_line();
        }
    }
    p
}
