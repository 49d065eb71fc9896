//! What PostgreSQL clients look for when they connect and browse: a `pg_catalog` schema
//! and the handful of catalog functions their queries call.
//!
//! Key decision: the catalog is built per statement from the reader's own listing
//! (`QueryScope::listing`), so psql's `\dt`, DBeaver's tree or Superset's table picker
//! show exactly the datasets the caller may read, with the columns (and masked types) it
//! sees: no dataset hidden from the caller appears, and nothing here is a read of data.
//! Only what common clients ask is modelled (namespaces, classes, attributes, types,
//! descriptions, settings); the rest of PostgreSQL's catalog is absent and says so as
//! "table not found". Each namespace is a schema (`traffic`, `parking`, ...), each dataset
//! a table in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::governed::QueryScope;

/// The schema's name, as clients write it.
pub const SCHEMA: &str = "pg_catalog";

/// The database clients connect to (any name is accepted; this is the one reported).
pub const DATABASE: &str = "citybrain";

/// What `version()` answers: clients parse "PostgreSQL N.M" from it to pick their dialect.
pub const VERSION: &str = concat!(
    "PostgreSQL 15.0 (citybrain ",
    env!("CARGO_PKG_VERSION"),
    "; read-only, Apache DataFusion)"
);

/// Oids of the namespaces PostgreSQL itself has; datasets' namespaces and tables count up
/// from PostgreSQL's first user oid.
const PG_CATALOG_OID: i32 = 11;
const PUBLIC_OID: i32 = 2200;
const INFORMATION_SCHEMA_OID: i32 = 13_000;
const FIRST_USER_OID: i32 = 16_384;
const OWNER_OID: i32 = 10;

/// The PostgreSQL type a column of `data_type` travels as: (oid, name, length). Shared
/// with the wire protocol so the catalog and the row descriptions agree.
pub fn pg_type(data_type: &DataType) -> (i32, &'static str, i16) {
    match data_type {
        DataType::Boolean => (16, "bool", 1),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (21, "int2", 2),
        DataType::Int32 | DataType::UInt16 => (23, "int4", 4),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => (20, "int8", 8),
        DataType::Float16 | DataType::Float32 => (700, "float4", 4),
        DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            (701, "float8", 8)
        }
        DataType::Date32 | DataType::Date64 => (1082, "date", 4),
        DataType::Timestamp(_, Some(_)) => (1184, "timestamptz", 8),
        DataType::Timestamp(_, None) => (1114, "timestamp", 8),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => (17, "bytea", -1),
        _ => (25, "text", -1),
    }
}

/// The types `pg_type` lists: every one `pg_type()` can answer, plus those clients probe.
const TYPES: &[(i32, &str, i16, &str)] = &[
    (16, "bool", 1, "B"),
    (17, "bytea", -1, "U"),
    (20, "int8", 8, "N"),
    (21, "int2", 2, "N"),
    (23, "int4", 4, "N"),
    (25, "text", -1, "S"),
    (26, "oid", 4, "N"),
    (114, "json", -1, "U"),
    (700, "float4", 4, "N"),
    (701, "float8", 8, "N"),
    (1043, "varchar", -1, "S"),
    (1082, "date", 4, "D"),
    (1114, "timestamp", 8, "D"),
    (1184, "timestamptz", 8, "D"),
    (1700, "numeric", -1, "N"),
];

/// Settings `current_setting()` and `pg_settings` answer (and the wire's `SHOW`).
pub const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "15.0"),
    ("server_version_num", "150000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("search_path", "public"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("max_identifier_length", "63"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
];

/// A setting's value by name, case-insensitively (`SHOW TimeZone`, `current_setting`).
pub fn setting(name: &str) -> Option<&'static str> {
    let name = name.trim().to_ascii_lowercase().replace(' ', "_");
    let name = match name.as_str() {
        "transaction_isolation_level" => "transaction_isolation",
        "time_zone" => "timezone",
        other => other,
    };
    SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The `pg_catalog` schema as one reader sees it.
#[derive(Debug)]
pub struct PgCatalog {
    scope: Arc<QueryScope>,
}

const TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_database",
    "pg_am",
    "pg_description",
    "pg_settings",
    "pg_roles",
    "pg_user",
    "pg_tables",
    "pg_index",
    "pg_constraint",
    "pg_inherits",
    "pg_proc",
    "pg_attrdef",
    "pg_enum",
    "pg_range",
];

impl PgCatalog {
    pub fn new(scope: Arc<QueryScope>) -> Self {
        Self { scope }
    }

    fn build(&self, name: &str) -> Result<Option<RecordBatch>> {
        let listing = self.scope.listing();
        let mut namespaces: BTreeMap<String, i32> = BTreeMap::new();
        for (dataset, ..) in &listing {
            let next = FIRST_USER_OID + namespaces.len() as i32;
            namespaces
                .entry(dataset.namespace().to_string())
                .or_insert(next);
        }
        // Table oids follow the namespaces' so both stay stable for one listing.
        let table_oid = |i: usize| FIRST_USER_OID + 1_000 + i as i32;
        let user = match &self.scope.reader {
            crate::Reader::Principal(p) => p.name.as_str().to_string(),
            crate::Reader::System => "citybrain".to_string(),
        };
        let batch = match name {
            "pg_namespace" => {
                let mut rows = vec![
                    (PG_CATALOG_OID, SCHEMA.to_string()),
                    (PUBLIC_OID, "public".to_string()),
                    (INFORMATION_SCHEMA_OID, "information_schema".to_string()),
                ];
                rows.extend(namespaces.iter().map(|(n, oid)| (*oid, n.clone())));
                batch(vec![
                    ints("oid", rows.iter().map(|r| r.0)),
                    texts("nspname", rows.iter().map(|r| Some(r.1.as_str()))),
                    ints("nspowner", rows.iter().map(|_| OWNER_OID)),
                    texts("nspacl", rows.iter().map(|_| None)),
                ])
            }
            "pg_class" => {
                let n = listing.len();
                batch(vec![
                    ints("oid", (0..n).map(table_oid)),
                    texts("relname", listing.iter().map(|(d, ..)| Some(d.table()))),
                    ints(
                        "relnamespace",
                        listing.iter().map(|(d, ..)| namespaces[d.namespace()]),
                    ),
                    ints("reltype", (0..n).map(|_| 0)),
                    ints("reloftype", (0..n).map(|_| 0)),
                    ints("relowner", (0..n).map(|_| OWNER_OID)),
                    ints("relam", (0..n).map(|_| 2)),
                    ints("relfilenode", (0..n).map(table_oid)),
                    ints("reltablespace", (0..n).map(|_| 0)),
                    floats("reltuples", (0..n).map(|_| -1.0)),
                    bools("relhasindex", (0..n).map(|_| false)),
                    bools("relisshared", (0..n).map(|_| false)),
                    texts("relpersistence", (0..n).map(|_| Some("p"))),
                    texts("relkind", (0..n).map(|_| Some("r"))),
                    smallints("relnatts", listing.iter().map(|(.., f)| f.len() as i16)),
                    smallints("relchecks", (0..n).map(|_| 0)),
                    bools("relhasrules", (0..n).map(|_| false)),
                    bools("relhastriggers", (0..n).map(|_| false)),
                    bools("relhassubclass", (0..n).map(|_| false)),
                    bools("relrowsecurity", (0..n).map(|_| false)),
                    bools("relforcerowsecurity", (0..n).map(|_| false)),
                    bools("relispopulated", (0..n).map(|_| true)),
                    texts("relreplident", (0..n).map(|_| Some("d"))),
                    bools("relispartition", (0..n).map(|_| false)),
                    texts("relacl", (0..n).map(|_| None)),
                    texts("reloptions", (0..n).map(|_| None)),
                    texts("relpartbound", (0..n).map(|_| None)),
                ])
            }
            "pg_attribute" => {
                let mut rows = Vec::new();
                for (i, (.., fields)) in listing.iter().enumerate() {
                    for (j, field) in fields.iter().enumerate() {
                        rows.push((table_oid(i), j as i16 + 1, field));
                    }
                }
                batch(vec![
                    ints("attrelid", rows.iter().map(|r| r.0)),
                    texts("attname", rows.iter().map(|r| Some(r.2.name().as_str()))),
                    ints("atttypid", rows.iter().map(|r| pg_type(r.2.data_type()).0)),
                    smallints("attlen", rows.iter().map(|r| pg_type(r.2.data_type()).2)),
                    smallints("attnum", rows.iter().map(|r| r.1)),
                    ints("atttypmod", rows.iter().map(|_| -1)),
                    smallints("attndims", rows.iter().map(|_| 0)),
                    bools("attnotnull", rows.iter().map(|r| !r.2.is_nullable())),
                    bools("atthasdef", rows.iter().map(|_| false)),
                    bools("atthasmissing", rows.iter().map(|_| false)),
                    texts("attidentity", rows.iter().map(|_| Some(""))),
                    texts("attgenerated", rows.iter().map(|_| Some(""))),
                    bools("attisdropped", rows.iter().map(|_| false)),
                    bools("attislocal", rows.iter().map(|_| true)),
                    ints("attcollation", rows.iter().map(|_| 0)),
                ])
            }
            "pg_type" => batch(vec![
                ints("oid", TYPES.iter().map(|t| t.0)),
                texts("typname", TYPES.iter().map(|t| Some(t.1))),
                ints("typnamespace", TYPES.iter().map(|_| PG_CATALOG_OID)),
                ints("typowner", TYPES.iter().map(|_| OWNER_OID)),
                smallints("typlen", TYPES.iter().map(|t| t.2)),
                bools("typbyval", TYPES.iter().map(|t| t.2 > 0)),
                texts("typtype", TYPES.iter().map(|_| Some("b"))),
                texts("typcategory", TYPES.iter().map(|t| Some(t.3))),
                bools("typisdefined", TYPES.iter().map(|_| true)),
                texts("typdelim", TYPES.iter().map(|_| Some(","))),
                ints("typrelid", TYPES.iter().map(|_| 0)),
                ints("typelem", TYPES.iter().map(|_| 0)),
                ints("typarray", TYPES.iter().map(|_| 0)),
                ints("typbasetype", TYPES.iter().map(|_| 0)),
                ints("typtypmod", TYPES.iter().map(|_| -1)),
                bools("typnotnull", TYPES.iter().map(|_| false)),
                ints("typcollation", TYPES.iter().map(|_| 0)),
            ]),
            "pg_database" => batch(vec![
                ints("oid", [1]),
                texts("datname", [Some(DATABASE)]),
                ints("datdba", [OWNER_OID]),
                ints("encoding", [6]),
                texts("datcollate", [Some("C")]),
                texts("datctype", [Some("C")]),
                bools("datistemplate", [false]),
                bools("datallowconn", [true]),
                ints("datconnlimit", [-1]),
                texts("datacl", [None]),
            ]),
            "pg_am" => batch(vec![
                ints("oid", [2]),
                texts("amname", [Some("heap")]),
                texts("amtype", [Some("t")]),
            ]),
            "pg_description" => {
                let rows: Vec<(i32, &str)> = listing
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, text, _))| !text.is_empty())
                    .map(|(i, (_, text, _))| (table_oid(i), text.as_str()))
                    .collect();
                batch(vec![
                    ints("objoid", rows.iter().map(|r| r.0)),
                    ints("classoid", rows.iter().map(|_| 1259)),
                    ints("objsubid", rows.iter().map(|_| 0)),
                    texts("description", rows.iter().map(|r| Some(r.1))),
                ])
            }
            "pg_settings" => batch(vec![
                texts("name", SETTINGS.iter().map(|s| Some(s.0))),
                texts("setting", SETTINGS.iter().map(|s| Some(s.1))),
            ]),
            "pg_roles" | "pg_user" => {
                let name_column = if name == "pg_roles" {
                    "rolname"
                } else {
                    "usename"
                };
                batch(vec![
                    ints("oid", [OWNER_OID]),
                    texts(name_column, [Some(user.as_str())]),
                    bools(
                        if name == "pg_roles" {
                            "rolsuper"
                        } else {
                            "usesuper"
                        },
                        [false],
                    ),
                    bools("rolcanlogin", [true]),
                ])
            }
            "pg_tables" => batch(vec![
                texts(
                    "schemaname",
                    listing.iter().map(|(d, ..)| Some(d.namespace())),
                ),
                texts("tablename", listing.iter().map(|(d, ..)| Some(d.table()))),
                texts("tableowner", listing.iter().map(|_| Some(user.as_str()))),
                texts("tablespace", listing.iter().map(|_| None)),
                bools("hasindexes", listing.iter().map(|_| false)),
                bools("hasrules", listing.iter().map(|_| false)),
                bools("hastriggers", listing.iter().map(|_| false)),
                bools("rowsecurity", listing.iter().map(|_| false)),
            ]),
            // Present so clients that join them find no rows rather than an error.
            "pg_index" => batch(vec![
                ints("indexrelid", []),
                ints("indrelid", []),
                bools("indisunique", []),
                bools("indisprimary", []),
                texts("indkey", []),
            ]),
            "pg_constraint" => batch(vec![
                ints("oid", []),
                texts("conname", []),
                ints("connamespace", []),
                texts("contype", []),
                ints("conrelid", []),
                ints("confrelid", []),
                texts("conkey", []),
                texts("confkey", []),
            ]),
            "pg_inherits" => batch(vec![
                ints("inhrelid", []),
                ints("inhparent", []),
                ints("inhseqno", []),
            ]),
            "pg_proc" => batch(vec![
                ints("oid", []),
                texts("proname", []),
                ints("pronamespace", []),
            ]),
            "pg_attrdef" => batch(vec![
                ints("oid", []),
                ints("adrelid", []),
                smallints("adnum", []),
                texts("adbin", []),
            ]),
            "pg_enum" => batch(vec![
                ints("oid", []),
                ints("enumtypid", []),
                texts("enumlabel", []),
            ]),
            "pg_range" => batch(vec![ints("rngtypid", []), ints("rngsubtype", [])]),
            _ => return Ok(None),
        };
        Ok(Some(batch?))
    }
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(batch) = self.build(name)? else {
            return Ok(None);
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

type Column = (Field, ArrayRef);

fn batch(columns: Vec<Column>) -> Result<RecordBatch> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(DataFusionError::from)
}

fn ints(name: &str, values: impl IntoIterator<Item = i32>) -> Column {
    (
        Field::new(name, DataType::Int32, false),
        Arc::new(Int32Array::from_iter_values(values)),
    )
}

fn smallints(name: &str, values: impl IntoIterator<Item = i16>) -> Column {
    (
        Field::new(name, DataType::Int16, false),
        Arc::new(Int16Array::from_iter_values(values)),
    )
}

fn floats(name: &str, values: impl IntoIterator<Item = f64>) -> Column {
    (
        Field::new(name, DataType::Float64, false),
        Arc::new(Float64Array::from_iter_values(values)),
    )
}

fn bools(name: &str, values: impl IntoIterator<Item = bool>) -> Column {
    let values: Vec<bool> = values.into_iter().collect();
    (
        Field::new(name, DataType::Boolean, false),
        Arc::new(BooleanArray::from(values)),
    )
}

fn texts<'a>(name: &str, values: impl IntoIterator<Item = Option<&'a str>>) -> Column {
    (
        Field::new(name, DataType::Utf8, true),
        Arc::new(StringArray::from_iter(values)),
    )
}

/// Casts to PostgreSQL's object-identifier types (`::regtype`, `::regclass`, `::oid`, ...)
/// are dropped: here an oid is an integer and the catalog's columns are plain. Enough for
/// what drivers send on connect (psycopg's type lookup: `oid::regtype::text` over
/// `to_regtype(name)`); a query that casts a table's name to `regclass` does not get the
/// table's oid.
pub fn drop_oid_casts(statement: &mut datafusion::sql::parser::Statement) {
    use datafusion::sql::sqlparser::ast::{DataType as SqlType, Expr, visit_expressions_mut};
    use std::ops::ControlFlow;
    let datafusion::sql::parser::Statement::Statement(statement) = statement else {
        return;
    };
    let _ = visit_expressions_mut(statement.as_mut(), |expr| {
        if let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
        {
            let oid_type = match data_type {
                SqlType::Regclass => true,
                SqlType::Custom(name, _) => matches!(
                    name.to_string()
                        .to_ascii_lowercase()
                        .trim_start_matches("pg_catalog."),
                    "regtype" | "regclass" | "regproc" | "regnamespace" | "regrole" | "oid"
                ),
                _ => false,
            };
            if oid_type {
                *expr = (**inner).clone();
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `LIKE pattern ESCAPE 'c'` with an escape character other than the backslash (which
/// DataFusion refuses) becomes `LIKE like_escape(pattern, 'c')`: the pattern rewritten, as it
/// is evaluated, to backslash escapes. SQLAlchemy's PostgreSQL dialect writes
/// `ESCAPE '/'` when it lists schemas.
pub fn backslash_escapes(statement: &mut datafusion::sql::parser::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;
    let datafusion::sql::parser::Statement::Statement(statement) = statement else {
        return;
    };
    let _ = visit_expressions_mut(statement.as_mut(), |expr| {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(escape) = escape_char
            && let Value::SingleQuotedString(c) = &escape.value
            && c != "\\"
        {
            let call = format!("like_escape({pattern}, '{}')", c.replace('\'', "''"));
            if let Ok(rewritten) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&call)
                .and_then(|mut p| p.parse_expr())
            {
                **pattern = rewritten;
                *escape_char = None;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `pattern` with `escape` (None: no escape character) written as backslash escapes.
fn backslash_escaped(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// The catalog functions clients call, each also under its `pg_catalog.` name (DataFusion
/// looks a qualified function up by its whole name).
pub fn functions() -> Vec<ScalarUDF> {
    use PgFunction::*;
    [
        ("version", Version),
        ("current_schema", CurrentSchema),
        ("current_database", CurrentDatabase),
        ("current_setting", CurrentSetting),
        ("pg_get_userbyid", UserById),
        ("pg_table_is_visible", True),
        ("pg_type_is_visible", True),
        ("has_table_privilege", True),
        ("has_schema_privilege", True),
        ("has_database_privilege", True),
        ("has_column_privilege", True),
        ("obj_description", NullText),
        ("col_description", NullText),
        ("shobj_description", NullText),
        ("pg_get_expr", NullText),
        ("pg_get_indexdef", NullText),
        ("pg_get_constraintdef", NullText),
        ("pg_encoding_to_char", Utf8Name),
        ("format_type", FormatType),
        ("pg_backend_pid", BackendPid),
        ("to_regtype", ToRegtype),
        ("like_escape", LikeEscape),
    ]
    .into_iter()
    .map(|(name, kind)| {
        ScalarUDF::new_from_impl(PgUdf {
            name: name.to_string(),
            aliases: vec![format!("{SCHEMA}.{name}")],
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Stable,
            ),
            kind,
        })
    })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PgFunction {
    Version,
    CurrentSchema,
    CurrentDatabase,
    CurrentSetting,
    UserById,
    True,
    NullText,
    Utf8Name,
    FormatType,
    BackendPid,
    ToRegtype,
    LikeEscape,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgUdf {
    name: String,
    aliases: Vec<String>,
    signature: Signature,
    kind: PgFunction,
}

impl ScalarUDFImpl for PgUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            PgFunction::True => DataType::Boolean,
            PgFunction::BackendPid | PgFunction::ToRegtype => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text =
            |v: Option<&str>| ColumnarValue::Scalar(ScalarValue::Utf8(v.map(str::to_string)));
        Ok(match self.kind {
            PgFunction::Version => text(Some(VERSION)),
            PgFunction::CurrentSchema => text(Some("public")),
            PgFunction::CurrentDatabase => text(Some(DATABASE)),
            PgFunction::UserById => text(Some("citybrain")),
            PgFunction::Utf8Name => text(Some("UTF8")),
            PgFunction::NullText => text(None),
            PgFunction::True => ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))),
            PgFunction::BackendPid => ColumnarValue::Scalar(ScalarValue::Int32(Some(0))),
            PgFunction::CurrentSetting => map_first(&args, |v| match v {
                ScalarValue::Utf8(Some(name))
                | ScalarValue::Utf8View(Some(name))
                | ScalarValue::LargeUtf8(Some(name)) => setting(name).map(str::to_string),
                _ => None,
            })?,
            PgFunction::ToRegtype => {
                let oid_of = |v: &ScalarValue| match v {
                    ScalarValue::Utf8(Some(name))
                    | ScalarValue::Utf8View(Some(name))
                    | ScalarValue::LargeUtf8(Some(name)) => TYPES
                        .iter()
                        .find(|t| t.1.eq_ignore_ascii_case(name.trim()))
                        .map(|t| t.0),
                    _ => None,
                };
                match args.args.first() {
                    Some(ColumnarValue::Scalar(v)) => {
                        ColumnarValue::Scalar(ScalarValue::Int32(oid_of(v)))
                    }
                    Some(ColumnarValue::Array(array)) => {
                        let out = (0..array.len())
                            .map(|i| ScalarValue::try_from_array(array, i).map(|v| oid_of(&v)))
                            .collect::<Result<Int32Array>>()?;
                        ColumnarValue::Array(Arc::new(out))
                    }
                    None => ColumnarValue::Scalar(ScalarValue::Int32(None)),
                }
            }
            PgFunction::LikeEscape => {
                let escape = match args.args.get(1) {
                    Some(ColumnarValue::Scalar(
                        ScalarValue::Utf8(Some(e))
                        | ScalarValue::Utf8View(Some(e))
                        | ScalarValue::LargeUtf8(Some(e)),
                    )) => e.chars().next(),
                    _ => None,
                };
                map_first(&args, |v| match v {
                    ScalarValue::Utf8(Some(p))
                    | ScalarValue::Utf8View(Some(p))
                    | ScalarValue::LargeUtf8(Some(p)) => Some(backslash_escaped(p, escape)),
                    _ => None,
                })?
            }
            PgFunction::FormatType => map_first(&args, |v| {
                let oid = match v {
                    ScalarValue::Int32(Some(o)) => i64::from(*o),
                    ScalarValue::Int64(Some(o)) => *o,
                    ScalarValue::UInt32(Some(o)) => i64::from(*o),
                    _ => return None,
                };
                TYPES
                    .iter()
                    .find(|t| i64::from(t.0) == oid)
                    .map(|t| match t.1 {
                        "timestamptz" => "timestamp with time zone".to_string(),
                        "timestamp" => "timestamp without time zone".to_string(),
                        "float8" => "double precision".to_string(),
                        "float4" => "real".to_string(),
                        "int8" => "bigint".to_string(),
                        "int4" => "integer".to_string(),
                        "int2" => "smallint".to_string(),
                        "bool" => "boolean".to_string(),
                        "varchar" => "character varying".to_string(),
                        other => other.to_string(),
                    })
            })?,
        })
    }
}

/// Applies `f` to each value of the first argument, giving text.
fn map_first(
    args: &ScalarFunctionArgs,
    f: impl Fn(&ScalarValue) -> Option<String>,
) -> Result<ColumnarValue> {
    match args.args.first() {
        None => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        Some(ColumnarValue::Scalar(v)) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(f(v)))),
        Some(ColumnarValue::Array(array)) => {
            let out = (0..array.len())
                .map(|i| ScalarValue::try_from_array(array, i).map(|v| f(&v)))
                .collect::<Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn other_escape_characters_become_backslashes() {
        assert_eq!(backslash_escaped("pg/_%", Some('/')), "pg\\_%");
        // An escaped escape character is the character itself, escaped.
        assert_eq!(backslash_escaped("a\\b//c", Some('/')), "a\\\\b\\/c");
        assert_eq!(backslash_escaped("a\\b", None), "a\\\\b");
    }

    #[test]
    fn settings_are_found_as_clients_spell_them() {
        assert_eq!(setting("TimeZone"), Some("UTC"));
        assert_eq!(
            setting("transaction isolation level"),
            Some("read committed")
        );
        assert_eq!(setting("standard_conforming_strings"), Some("on"));
        assert_eq!(setting("no_such_thing"), None);
    }

    #[test]
    fn every_wire_type_is_listed() {
        for t in [
            DataType::Boolean,
            DataType::Int64,
            DataType::Int32,
            DataType::Int16,
            DataType::Float64,
            DataType::Float32,
            DataType::Utf8,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Binary,
        ] {
            let (oid, name, _) = pg_type(&t);
            assert!(
                TYPES.iter().any(|x| x.0 == oid && x.1 == name),
                "{t} travels as {name} ({oid}), which pg_type does not list"
            );
        }
    }
}
