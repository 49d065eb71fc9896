//! NGSI-LD (ETSI GS CIM 009) as the hub's rows and SQL, with no I/O: an entity to the row
//! that stores it and a row back to an entity (`convert`), a query's parameters (`q`, ids,
//! a geo-query, a time condition) to the SQL condition a governed data call runs, and the
//! meta-model's checks on what a client writes (`validate`). The HTTP side (routes,
//! governance, the id index, subscriptions) is `citybrain_server::ngsi`.
//!
//! Key decision: a client's values reach SQL only as literals (`convert::lit`), never as
//! SQL text; the fuzz target `ngsi` checks that no input ends a statement, comments out
//! the rest of it or leaves a parenthesis open outside a literal. Errors are the detail of
//! the specification's `BadRequestData`, as text.

pub mod convert;
#[doc(hidden)]
pub mod fuzzing;
pub mod validate;

use std::collections::BTreeMap;

use citybrain_hub::{DatasetDef, NgsiLdDef};
use convert::{geo_to_sql, lit, q_to_sql, to_row};
use serde_json::{Map, Value};

/// A row of a dataset, as JSON.
pub type Row = Map<String, Value>;

/// The parameters of a query or a retrieval (`GET /entities?type=...&q=...`), and of a
/// query sent as a body (`entityOperations/query`).
#[derive(Debug, serde::Deserialize, Default)]
pub struct ReadParams {
    pub r#type: Option<String>,
    pub id: Option<String>,
    pub attrs: Option<String>,
    pub q: Option<String>,
    pub options: Option<String>,
    pub format: Option<String>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    pub count: Option<bool>,
    pub georel: Option<String>,
    pub geometry: Option<String>,
    pub coordinates: Option<String>,
    pub timerel: Option<String>,
    #[serde(rename = "timeAt")]
    pub time_at: Option<String>,
    #[serde(rename = "endTimeAt")]
    pub end_time_at: Option<String>,
    #[serde(rename = "lastN")]
    pub last_n: Option<usize>,
    /// A query sent as a body (`entityOperations/query`), where entities named by id
    /// alone are a selection.
    #[serde(skip)]
    pub from_body: bool,
}

impl ReadParams {
    /// The attributes asked for (`attrs=a,b`), if any.
    pub fn attrs(&self) -> Option<Vec<String>> {
        self.attrs.as_ref().map(|a| {
            a.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }

    /// Whether the simplified (key-values) representation is asked for.
    pub fn key_values(&self) -> bool {
        let opts = self.options.as_deref().unwrap_or("");
        opts.split(',')
            .any(|o| o == "keyValues" || o == "simplified")
            || matches!(self.format.as_deref(), Some("simplified" | "keyValues"))
    }
}

/// The SQL condition selecting the entities `params` ask for among `def`'s rows (ids, `q`,
/// a geo-query), joined with AND; empty when they ask for all.
pub fn conditions(
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    params: &ReadParams,
) -> Result<String, String> {
    let mut conds = Vec::new();
    if let Some(ids) = &params.id {
        let list: Vec<String> = ids.split(',').map(|i| lit(i.trim())).collect();
        conds.push(format!("{} IN ({})", ngsi.id, list.join(", ")));
    }
    if let Some(q) = &params.q {
        conds.push(format!("({})", q_to_sql(def, ngsi, q)?));
    }
    if let Some(g) = geo_to_sql(def, params)? {
        conds.push(g);
    }
    Ok(conds.join(" AND "))
}

/// The rows a temporal entity holds: one per instant its attributes' instances name
/// (`observedAt`, else `now`, the write's time), each with the attributes observed then.
pub fn temporal_rows_of(
    def: &DatasetDef,
    ngsi: &NgsiLdDef,
    id: &str,
    entity: &Row,
    now: &str,
) -> Result<Vec<Row>, String> {
    let mut instants: BTreeMap<String, Row> = BTreeMap::new();
    for (key, value) in entity {
        if matches!(key.as_str(), "id" | "@id" | "type" | "@type" | "@context") {
            continue;
        }
        let instances: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for instance in instances {
            let at = instance
                .get("observedAt")
                .and_then(Value::as_str)
                .unwrap_or(now);
            instants
                .entry(at.to_string())
                .or_default()
                .insert(key.clone(), instance.clone());
        }
    }
    if instants.is_empty() {
        return Err("a temporal entity needs at least one attribute instance".into());
    }
    instants
        .into_values()
        .map(|mut attrs| {
            attrs.insert("id".into(), Value::from(id));
            to_row(def, ngsi, &attrs, None, now)
        })
        .collect()
}
