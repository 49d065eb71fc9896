//! Bounds a statement must stay within before and while it runs, so that no caller can
//! take the process down (the security issue's first and third findings).
//!
//! Key decision: the bounds are checked where the cost is decided, not after it is paid.
//! - *Size and depth* are checked on the text and the parsed tree before planning:
//!   DataFusion plans, optimises and even drops expressions recursively, so a deep enough
//!   `1+1+…` (about 1,000 terms) overflows a worker's stack. The token count is checked
//!   first because the parser builds long operator chains without recursion but the tree it
//!   returns is still dropped recursively.
//! - *Text a function builds* (`repeat`, `lpad`, `replace`, …) is bounded before the
//!   function allocates it: DataFusion's memory pool only sees operators' buffers, and an
//!   allocation that fails aborts a Rust process; the bound is computed from the inputs.
//! - *Result size* (rows and bytes) is counted as batches arrive, in `lib.rs`.

use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Operators (and AND/OR/NOT) in `sql`, counted on tokens: a bound on how large and how
/// deep its expressions can be, known before anything builds a tree.
pub(crate) fn operator_count(sql: &str) -> Result<usize, String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| e.to_string())?;
    Ok(tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::XOR
            ),
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::Comma
            | Token::Period
            | Token::LParen
            | Token::RParen
            | Token::SemiColon
            | Token::EOF => false,
            Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_) => false,
            _ => true,
        })
        .count())
}

/// Walks a statement's expressions until one nests deeper than `limit`.
struct DepthProbe {
    depth: usize,
    deepest: usize,
    limit: usize,
}

impl Visitor for DepthProbe {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        // Stop at once: the walk itself recurses, so it must not follow a deep tree down.
        if self.depth > self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Whether any expression of `statement` nests deeper than `limit`.
pub(crate) fn exceeds_depth(statement: &Statement, limit: usize) -> bool {
    let mut probe = DepthProbe {
        depth: 0,
        deepest: 0,
        limit,
    };
    match statement {
        Statement::Statement(s) => s.visit(&mut probe).is_break(),
        Statement::Explain(e) => exceeds_depth(&e.statement, limit),
        // DDL, COPY and RESET are refused as not read-only before they are planned.
        _ => false,
    }
}

/// The marker error for text a function would build past the limit; `lib.rs` turns it
/// into `SqlError::ValueTooLarge`.
#[derive(Debug)]
pub struct ValueTooLarge {
    pub function: String,
    pub bytes: u128,
    pub limit: usize,
}

impl std::fmt::Display for ValueTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}() would build up to {} bytes of text in one batch, over the limit of {} bytes (sql max_value_bytes)",
            self.function, self.bytes, self.limit
        )
    }
}

impl std::error::Error for ValueTooLarge {}

/// The functions whose output can be far larger than their inputs, each wrapped so that
/// an upper bound of its output is checked before it runs.
pub(crate) const EXPANDING: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "replace",
    "regexp_replace",
    "concat",
    "concat_ws",
];

/// A function of [`EXPANDING`] with its output bounded.
#[derive(Debug)]
pub(crate) struct Bounded {
    inner: Arc<ScalarUDF>,
    limit: usize,
}

impl Bounded {
    pub(crate) fn wrap(inner: Arc<ScalarUDF>, limit: usize) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { inner, limit })
    }
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.limit == other.limit
    }
}

impl Eq for Bounded {}

impl Hash for Bounded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.limit.hash(state);
    }
}

/// Bytes of text in a value, for each row (`rows` of them for a scalar): total and largest.
fn text_bytes(value: &ColumnarValue, rows: usize) -> (u128, u128) {
    match value {
        ColumnarValue::Scalar(s) => {
            let n = match s {
                ScalarValue::Utf8(Some(t))
                | ScalarValue::LargeUtf8(Some(t))
                | ScalarValue::Utf8View(Some(t)) => t.len(),
                other => other.to_string().len(),
            } as u128;
            (n * rows as u128, n)
        }
        ColumnarValue::Array(a) => array_text_bytes(a),
    }
}

fn array_text_bytes(a: &ArrayRef) -> (u128, u128) {
    let lens: Box<dyn Iterator<Item = usize>> = match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            Box::new(s.offsets().windows(2).map(|w| (w[1] - w[0]) as usize))
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            Box::new(s.offsets().windows(2).map(|w| (w[1] - w[0]) as usize))
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            Box::new(s.views().iter().map(|v| *v as u32 as usize))
        }
        // Anything else is cast to text by the function: bound it by its display width.
        _ => {
            let each = a.get_array_memory_size() / a.len().max(1) * 4 + 24;
            return ((each * a.len()) as u128, each as u128);
        }
    };
    lens.fold((0, 0), |(sum, max), n| {
        (sum + n as u128, max.max(n as u128))
    })
}

/// An integer argument's largest and total value (negative counts as 0), for each row.
fn int_bounds(value: &ColumnarValue, rows: usize) -> (u128, u128) {
    match value {
        ColumnarValue::Scalar(s) => {
            let n = s
                .cast_to(&DataType::Int64)
                .ok()
                .and_then(|v| match v {
                    ScalarValue::Int64(Some(n)) => Some(n.max(0) as u128),
                    _ => None,
                })
                .unwrap_or(0);
            (n, n * rows as u128)
        }
        ColumnarValue::Array(a) => {
            let Ok(ints) = arrow::compute::cast(a, &DataType::Int64) else {
                return (0, 0);
            };
            ints.as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .fold((0, 0), |(max, sum), n| {
                    let n = n.max(0) as u128;
                    (max.max(n), sum + n)
                })
        }
    }
}

/// An upper bound of the bytes `function` builds for one batch of `args`.
fn output_bound(function: &str, args: &[ColumnarValue], rows: usize) -> u128 {
    let rows_n = rows as u128;
    let text = |i: usize| args.get(i).map_or((0, 0), |a| text_bytes(a, rows));
    match function {
        "repeat" => {
            let (total, longest) = text(0);
            let (most, sum) = args.get(1).map_or((0, 0), |a| int_bounds(a, rows));
            (total * most).min(longest * sum)
        }
        // Up to n characters of up to 4 bytes each.
        "lpad" | "rpad" => {
            let (_, sum) = args.get(1).map_or((0, 0), |a| int_bounds(a, rows));
            sum * 4 + text(0).0
        }
        // Every match (at most one per byte, and one more) becomes the replacement.
        "replace" => {
            let (total, _) = text(0);
            let (_, longest_to) = text(2);
            total + (total + rows_n) * longest_to
        }
        // As `replace`, and each reference to a group (`\1`, `${name}`) adds at most the
        // match itself: matches do not overlap, so their lengths add up to the input's.
        "regexp_replace" => {
            let (total, _) = text(0);
            let (_, longest_to) = text(2);
            let references = match args.get(2) {
                Some(ColumnarValue::Scalar(s)) => s
                    .to_string()
                    .bytes()
                    .filter(|b| *b == b'\\' || *b == b'$')
                    .count() as u128,
                _ => longest_to,
            };
            total + (total + rows_n) * longest_to + references * total
        }
        "concat" => (0..args.len()).map(|i| text(i).0).sum(),
        "concat_ws" => {
            let (sep, _) = text(0);
            (1..args.len()).map(|i| text(i).0).sum::<u128>() + sep * args.len() as u128
        }
        _ => 0,
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bound = output_bound(self.inner.name(), &args.args, args.number_rows);
        if bound > self.limit as u128 {
            return Err(DataFusionError::External(Box::new(ValueTooLarge {
                function: self.inner.name().to_string(),
                bytes: bound,
                limit: self.limit,
            })));
        }
        self.inner.invoke_with_args(args)
    }

    // `simplify` is left at its default on purpose: the inner functions' rewrites build
    // calls of the unwrapped function, which would escape the bound.

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_counted_not_literals_or_lists() {
        assert_eq!(operator_count("SELECT 1+1+1").unwrap(), 2);
        // `*` counts too: the bound is conservative.
        assert_eq!(
            operator_count("SELECT * FROM t WHERE a IN (1, 2, 3) AND b = 'x+y'").unwrap(),
            3
        );
    }

    #[test]
    fn repeat_bound_is_length_times_count() {
        let args = [
            ColumnarValue::Scalar(ScalarValue::Utf8(Some("ab".into()))),
            ColumnarValue::Scalar(ScalarValue::Int64(Some(1_000))),
        ];
        assert_eq!(output_bound("repeat", &args, 1), 2_000);
        assert_eq!(output_bound("repeat", &args, 3), 6_000);
    }
}
