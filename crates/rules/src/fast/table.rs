//! The enterprises as the fast evaluator reads them: one typed `i64` column per input (text
//! dictionary-encoded, rates fixed-point at [`RATE_SCALE`]), each with its value range for
//! the overflow proofs of [`super::bounds`].

use std::collections::HashMap;

use citybrain_core::Date;

use super::RATE_SCALE;
use crate::batch::Column;
use crate::eval::{Ratio, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnKind {
    Int,
    Money,
    Rate,
    Bool,
    Date,
    Text,
}

#[derive(Debug, Clone)]
pub(super) struct TypedColumn {
    pub(super) kind: ColumnKind,
    /// Decimal scale (rates only; everything else is whole).
    pub(super) scale: u32,
    pub(super) vals: Vec<i64>,
    /// Rates that are not decimals at [`RATE_SCALE`] keep their exact values (rare): policies
    /// that read them go through the batch evaluator.
    pub(super) exact: Option<Vec<Ratio>>,
    /// The smallest and largest value, for proving an operation cannot overflow.
    pub(super) range: (i64, i64),
}

/// The enterprises as typed integer columns (text dictionary-encoded).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub(super) rows: usize,
    pub(super) cols: Vec<TypedColumn>,
    pub(super) index: HashMap<String, usize>,
    pub(super) codes: HashMap<String, i64>,
    pub(super) words: Vec<String>,
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

    fn push(&mut self, name: &str, mut col: TypedColumn) -> Result<(), LengthMismatch> {
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

    fn plain(kind: ColumnKind, vals: Vec<i64>) -> TypedColumn {
        TypedColumn {
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
        self.push(name, Self::plain(ColumnKind::Int, vals))
    }
    /// Money in fen.
    pub fn add_money(&mut self, name: &str, vals: Vec<i64>) -> Result<(), LengthMismatch> {
        self.push(name, Self::plain(ColumnKind::Money, vals))
    }
    pub fn add_bool(&mut self, name: &str, vals: Vec<bool>) -> Result<(), LengthMismatch> {
        let v = vals.into_iter().map(i64::from).collect();
        self.push(name, Self::plain(ColumnKind::Bool, v))
    }
    /// Days since 1970-01-01.
    pub fn add_date(&mut self, name: &str, vals: Vec<i32>) -> Result<(), LengthMismatch> {
        let v = vals.into_iter().map(i64::from).collect();
        self.push(name, Self::plain(ColumnKind::Date, v))
    }
    /// Text already encoded with [`Table::code`].
    pub fn add_text_codes(&mut self, name: &str, codes: Vec<i64>) -> Result<(), LengthMismatch> {
        self.push(name, Self::plain(ColumnKind::Text, codes))
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
            Some(v) => TypedColumn {
                kind: ColumnKind::Rate,
                scale: RATE_SCALE,
                vals: v,
                exact: None,
                range: (0, 0),
            },
            None => TypedColumn {
                kind: ColumnKind::Rate,
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
    pub(super) fn value(&self, col: usize, row: usize) -> Value {
        let c = &self.cols[col];
        let v = c.vals[row];
        match c.kind {
            ColumnKind::Int | ColumnKind::Money => Value::Num(Ratio::int(i128::from(v))),
            ColumnKind::Rate => match &c.exact {
                Some(e) => Value::Num(e[row]),
                None => Value::Num(
                    Ratio::checked(i128::from(v), 10i128.pow(c.scale)).unwrap_or(Ratio::int(0)),
                ),
            },
            ColumnKind::Bool => Value::Bool(v != 0),
            ColumnKind::Date => Value::Date(Date(v as i32)),
            ColumnKind::Text => Value::Text(self.words[v as usize].clone()),
        }
    }

    /// Rows `from..to` of some columns, for the batch evaluator.
    pub(super) fn slice(
        &self,
        names: &[(String, usize)],
        from: usize,
        to: usize,
    ) -> HashMap<String, Column> {
        names
            .iter()
            .map(|(name, i)| {
                let c = &self.cols[*i];
                let v = &c.vals[from..to];
                let col = match c.kind {
                    ColumnKind::Int => Column::Int(v.to_vec()),
                    ColumnKind::Money => Column::Money(v.to_vec()),
                    ColumnKind::Rate => Column::Rate(
                        (from..to)
                            .map(|r| match self.value(*i, r) {
                                Value::Num(x) => x,
                                _ => Ratio::int(0),
                            })
                            .collect(),
                    ),
                    ColumnKind::Bool => Column::Bool(v.iter().map(|x| *x != 0).collect()),
                    ColumnKind::Date => Column::Date(v.iter().map(|x| *x as i32).collect()),
                    ColumnKind::Text => {
                        Column::Text(v.iter().map(|x| self.words[*x as usize].clone()).collect())
                    }
                };
                (name.clone(), col)
            })
            .collect()
    }
}
