//! The governance matrix: sharing class × grant state × field classification × SQL shape.
//!
//! Every personal value in the data is distinctive; for each combination the test runs
//! each SQL shape and checks that no raw personal value appears in the result unless the
//! caller owns the data or holds a grant naming the field raw, that predicates on masked
//! fields cannot probe raw values, and that every permitted query works.

mod common;

use citybrain_core::{DatasetName, DepartmentId, Timestamp};
use citybrain_gov::{CallKind, GrantState, Principal, Role};
use citybrain_sql::{DataCall, Reader, SqlError};
use common::*;

/// The SQL shapes, each with the columns it needs. `T` is replaced by the table.
const SHAPES: &[(&str, &[&str])] = &[
    ("SELECT * FROM {T}", &[]),
    (
        "SELECT plate, upper(id_number) || '-' || phone AS x, age + 1 AS a FROM {T}",
        &["plate", "id_number", "phone", "age"],
    ),
    (
        "SELECT t.plate, t.id_number, v.clinic FROM {T} t JOIN health.visits v ON t.id_number = v.id_number",
        &["plate", "id_number"],
    ),
    (
        "SELECT id_number, count(*) AS n, max(age) AS oldest FROM {T} GROUP BY id_number",
        &["id_number", "age"],
    ),
    ("SELECT DISTINCT plate FROM {T}", &["plate"]),
    (
        "SELECT min(id_number) AS a, max(plate) AS b, min(phone) AS c FROM {T}",
        &["id_number", "plate", "phone"],
    ),
    (
        "SELECT plate FROM {T} WHERE id_number IN (SELECT id_number FROM {T} WHERE district = 'd1')",
        &["plate", "id_number"],
    ),
    (
        "WITH x AS (SELECT plate, id_number FROM {T}) SELECT * FROM x ORDER BY id_number DESC LIMIT 5",
        &["plate", "id_number"],
    ),
    (
        "SELECT plate FROM {T} ORDER BY phone LIMIT 3",
        &["plate", "phone"],
    ),
    (
        "SELECT array_agg(plate) AS all_plates, string_agg(id_number, ',') AS ids FROM {T}",
        &["plate", "id_number"],
    ),
    (
        "SELECT district, count(DISTINCT id_number) AS people FROM {T} GROUP BY district ORDER BY district",
        &["id_number"],
    ),
    // Grouping by a pseudonymised column alone: pseudonymised after grouping (`lift`).
    (
        "SELECT id_number, count(*) AS n FROM {T} GROUP BY id_number HAVING count(*) >= 1 ORDER BY n DESC, id_number LIMIT 7",
        &["id_number"],
    ),
    (
        "SELECT a.id_number, a.n, v.clinic FROM (SELECT id_number, count(*) AS n FROM {T} GROUP BY id_number) a JOIN health.visits v ON a.id_number = v.id_number",
        &["id_number"],
    ),
    (
        "SELECT count(DISTINCT id_number) AS people, count(*) AS n FROM {T}",
        &["id_number"],
    ),
];

/// Probes that would reveal membership of a raw value if predicates saw raw data.
fn probes() -> Vec<(String, &'static str)> {
    vec![
        (
            format!(
                "SELECT count(*) AS n FROM {{T}} WHERE id_number = '{}'",
                id_number(3)
            ),
            "id_number",
        ),
        (
            format!(
                "SELECT count(*) AS n FROM {{T}} WHERE plate = '{}'",
                plate(3)
            ),
            "plate",
        ),
        (
            format!(
                "SELECT count(*) AS n FROM {{T}} WHERE phone LIKE '{}%'",
                &phone(3)[..8]
            ),
            "phone",
        ),
        (
            "SELECT count(*) AS n FROM {T} WHERE age = 29".to_string(),
            "age",
        ),
    ]
}

fn raw_values(field: &str) -> Vec<String> {
    (0..PEOPLE)
        .map(|i| match field {
            "plate" => plate(i),
            "id_number" => id_number(i),
            "phone" => phone(i),
            _ => unreachable!(),
        })
        .collect()
}

/// Checks one caller against one table: which fields must come out masked, which raw.
fn check(city: &City, who: &Principal, table: &str, visible: &[&str], raw: &[&str]) {
    let masked_text: Vec<&str> = ["plate", "id_number", "phone"]
        .into_iter()
        .filter(|f| visible.contains(f) && !raw.contains(f))
        .collect();
    for (shape, needs) in SHAPES {
        let sql = shape.replace("{T}", table);
        let permitted = needs.iter().all(|f| visible.contains(f));
        let result = city.sql(who, &sql);
        if !permitted {
            assert!(
                matches!(result, Err(SqlError::Invalid(_))),
                "{table} as {}: {sql} should fail on an ungranted field: {result:?}",
                who.name
            );
            continue;
        }
        let text = result.unwrap_or_else(|e| panic!("{table} as {}: {sql}: {e}", who.name));
        // Header frame plus at least one row; except that a caller joining its raw ids
        // with another department's pseudonyms rightly matches nothing.
        let raw_meets_masked = sql.contains("JOIN") && raw.contains(&"id_number");
        assert!(
            raw_meets_masked || text.lines().count() > 4,
            "{sql}: {text}"
        );
        for field in &masked_text {
            for value in raw_values(field) {
                assert!(
                    !text.contains(&value),
                    "{table} as {}: raw {field} '{value}' leaked by {sql}:\n{text}",
                    who.name
                );
            }
        }
        for field in raw {
            if field != &"age" && visible.contains(field) && shape.starts_with("SELECT * ") {
                assert!(
                    raw_values(field).iter().any(|v| text.contains(v)),
                    "{field} should be raw in {sql}:\n{text}"
                );
            }
        }
    }
    for (sql, field) in probes() {
        if !visible.contains(&field) {
            continue;
        }
        let sql = sql.replace("{T}", table);
        let text = city.sql(who, &sql).unwrap();
        let n: u64 = text
            .lines()
            .nth(3)
            .unwrap()
            .trim_matches(|c| c == '|' || c == ' ')
            .parse()
            .unwrap();
        if raw.contains(&field) {
            assert!(n > 0, "{sql} should match raw data: {text}");
        } else {
            assert_eq!(n, 0, "{table} as {}: {sql} probed a masked field", who.name);
        }
    }
}

const PERSONAL: &[&str] = &["plate", "id_number", "phone", "age"];

#[test]
fn the_owner_reads_raw() {
    let city = city();
    let owner = principal("transport_admin", "transport", Role::Admin);
    for table in [
        "transport.people_u",
        "transport.people_c",
        "transport.people_n",
    ] {
        check(&city, &owner, table, PERSONAL, PERSONAL);
    }
}

#[test]
fn unconditional_data_is_masked_without_a_raw_grant() {
    let city = city();
    let market = principal("market_admin", "market", Role::Admin);
    check(&city, &market, "transport.people_u", PERSONAL, &[]);
    // Distinct counts and joins still work on pseudonyms: same answers as on raw data.
    for sql in [
        "SELECT count(DISTINCT id_number) AS n FROM transport.people_u",
        "SELECT count(*) AS n FROM transport.people_u t JOIN health.visits v ON t.id_number = v.id_number",
    ] {
        let raw = city.rt.block_on(city.engine.query(sql)).unwrap();
        let raw = arrow::util::pretty::pretty_format_batches(&raw.batches)
            .unwrap()
            .to_string();
        assert_eq!(city.sql(&market, sql).unwrap(), raw, "{sql}");
    }
    // Grouping by a pseudonymised column groups the raw values and pseudonymises the keys
    // afterwards; the answers are those of pseudonymising first (forced here by grouping
    // on an expression, which the rewrite leaves alone).
    for (lifted, at_scan) in [
        (
            "SELECT id_number, count(*) AS n FROM transport.people_u GROUP BY id_number ORDER BY id_number",
            "SELECT id_number || '' AS id_number, count(*) AS n FROM transport.people_u GROUP BY id_number || '' ORDER BY id_number",
        ),
        (
            "SELECT count(DISTINCT id_number) AS n FROM transport.people_u",
            "SELECT count(DISTINCT id_number || '') AS n FROM transport.people_u",
        ),
        (
            "SELECT a.id_number, a.n, v.clinic FROM (SELECT id_number, count(*) AS n FROM transport.people_u GROUP BY id_number) a \
             JOIN health.visits v ON a.id_number = v.id_number ORDER BY a.id_number, v.clinic",
            "SELECT a.id_number, a.n, v.clinic FROM (SELECT id_number || '' AS id_number, count(*) AS n FROM transport.people_u GROUP BY id_number || '') a \
             JOIN health.visits v ON a.id_number = v.id_number ORDER BY a.id_number, v.clinic",
        ),
    ] {
        let (a, b) = (
            city.sql(&market, lifted).unwrap(),
            city.sql(&market, at_scan).unwrap(),
        );
        assert!(a.lines().count() > 4, "{lifted}: {a}");
        assert_eq!(a, b, "{lifted}");
    }
    let plan = city
        .sql(
            &market,
            "EXPLAIN SELECT id_number, count(*) AS n FROM transport.people_u GROUP BY id_number",
        )
        .unwrap();
    assert!(plan.contains("raw until grouped"), "not rewritten:\n{plan}");
    // Not for a mask that is not one-to-one (plates shown as 浙A·***45).
    let plan = city
        .sql(
            &market,
            "EXPLAIN SELECT plate, count(*) AS n FROM transport.people_u GROUP BY plate",
        )
        .unwrap();
    assert!(!plan.contains("raw until grouped"), "{plan}");

    // Non-raw grants change nothing; a raw grant on plate unmasks plate only.
    city.grant("transport.people_u", &[], &["plate"], "requested");
    check(&city, &market, "transport.people_u", PERSONAL, &[]);
    city.grant("transport.people_u", &[], &["plate"], "approved");
    check(&city, &market, "transport.people_u", PERSONAL, &["plate"]);
}

#[test]
fn conditional_data_needs_an_active_grant() {
    let city = city();
    let market = principal("market_admin", "market", Role::Admin);
    let table = "transport.people_c";
    for state in ["none", "requested", "refused", "revoked", "expired"] {
        if state != "none" {
            city.grant(table, &["plate", "district"], &[], state);
        }
        let err = city
            .sql(&market, &format!("SELECT district FROM {table}"))
            .unwrap_err();
        let expected = if state == "none" { "has none" } else { state };
        match err {
            SqlError::Denied(m) => {
                assert!(m.contains("needs a grant") && m.contains(expected), "{m}")
            }
            other => panic!("{state}: expected a denial, got {other:?}"),
        }
    }
    // An approved grant shows its fields only, masked unless raw.
    city.grant(
        table,
        &["ts", "plate", "id_number", "district"],
        &[],
        "approved",
    );
    check(&city, &market, table, &["plate", "id_number"], &[]);
    let grant = city.grant(table, &["phone"], &["phone"], "approved");
    check(
        &city,
        &market,
        table,
        &["plate", "id_number", "phone"],
        &["phone"],
    );
    // Revoked: stops at once.
    let owner = principal("transport_admin", "transport", Role::Admin);
    city.gov
        .decide_grant(
            &owner,
            grant,
            &DepartmentId::parse("transport").unwrap(),
            GrantState::Revoked,
            "done",
            city.now,
        )
        .unwrap();
    check(&city, &market, table, &["plate", "id_number"], &[]);
    // Expiry: the same grants stop working once their day is over.
    let later = Timestamp(city.now.0 + 86_400_000_000);
    assert!(matches!(
        city.sql_at(&market, &format!("SELECT plate FROM {table}"), later),
        Err(SqlError::Denied(_))
    ));
}

#[test]
fn none_is_invisible_to_other_departments() {
    let city = city();
    let market = principal("market_admin", "market", Role::Admin);
    let hidden = city
        .sql(&market, "SELECT * FROM transport.people_n")
        .unwrap_err()
        .to_string();
    let missing = city
        .sql(&market, "SELECT * FROM transport.no_such_table")
        .unwrap_err()
        .to_string();
    assert_eq!(
        hidden.replace("people_n", "X"),
        missing.replace("no_such_table", "X")
    );
    let tables = city
        .sql(&market, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'transport' ORDER BY table_name")
        .unwrap();
    assert!(
        tables.contains("people_u") && !tables.contains("people_n") && !tables.contains("people_c"),
        "{tables}"
    );
}

#[test]
fn every_call_is_audited_with_fields_and_outcome() {
    let city = city();
    let market = principal("market_admin", "market", Role::Admin);
    city.sql(
        &market,
        "SELECT plate FROM transport.people_u WHERE district = 'd1'",
    )
    .unwrap();
    city.sql(&market, "SELECT * FROM transport.people_c")
        .unwrap_err();
    let calls = city
        .gov
        .audit()
        .calls_on(&DatasetName::parse("transport.people_u").unwrap(), 10)
        .unwrap();
    let last = calls.last().unwrap();
    assert_eq!(last.call.principal, "market_admin");
    assert_eq!(last.call.purpose, "matrix test");
    assert_eq!(last.call.rows, 4);
    assert_eq!(
        last.call.datasets[0].fields,
        vec!["district".to_string(), "plate".into()]
    );
    assert_market_denied_people_c_once(&city);
}

/// Issue 20, item 4: equal values in two datasets share pseudonyms only while a linkage
/// their owners approved says so; a withdrawn linkage unlinks at once.
#[test]
fn joins_across_departments_need_a_linkage_both_owners_approved() {
    let city = city();
    let market = principal("market_admin", "market", Role::Admin);
    let join = "SELECT count(*) AS n FROM transport.people_u t JOIN health.visits v ON t.id_number = v.id_number";
    let linked = city.sql(&market, join).unwrap();
    assert!(linked.contains("| 6 |"), "{linked}");
    // Market cannot approve or withdraw what is not its data, nor join a linked column.
    let stranger = || {
        city.gov
            .approve_linkage(&market, "people-visits", city.now)
            .unwrap_err()
    };
    assert!(matches!(stranger(), citybrain_gov::GovError::Forbidden(_)));
    city.gov
        .withdraw_linkage(
            &principal("health_admin", "health", Role::Admin),
            "people-visits",
            city.now,
        )
        .unwrap();
    let unlinked = city.sql(&market, join).unwrap();
    assert!(unlinked.contains("| 0 |"), "{unlinked}");
    // Within one column pseudonyms are still stable.
    let itself = city
        .sql(
            &market,
            "SELECT count(*) AS n FROM transport.people_u a JOIN transport.people_u b ON a.id_number = b.id_number",
        )
        .unwrap();
    assert!(itself.contains(&format!("| {PEOPLE} ")), "{itself}");
}

/// The Postgres wire's view of the same rules: `pg_catalog` lists what
/// `information_schema` lists for the reader (never a hidden dataset, never a column the
/// view leaves out), and a `$1` parameter compared with a masked field probes masked
/// values only, as a literal does.
#[test]
fn the_pg_catalog_and_parameters_keep_the_same_rules() {
    let city = city();
    let market = principal("market_admin", "market", Role::Admin);
    let listed = city
        .sql(
            &market,
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'transport' ORDER BY 2",
        )
        .unwrap();
    assert!(
        listed.contains("people_u") && !listed.contains("people_n") && !listed.contains("people_c"),
        "{listed}"
    );
    // Unqualified, as PostgreSQL resolves pg_catalog.
    let unqualified = city
        .sql(&market, "SELECT relname FROM pg_class ORDER BY 1")
        .unwrap();
    assert!(!unqualified.contains("people_n"), "{unqualified}");
    let owner = principal("transport_admin", "transport", Role::Admin);
    let owners = city
        .sql(&owner, "SELECT relname FROM pg_catalog.pg_class ORDER BY 1")
        .unwrap();
    assert!(
        owners.contains("people_n") && owners.contains("people_c"),
        "{owners}"
    );
    // A masked plate travels as text; the attribute list is the reader's columns.
    let columns = city
        .sql(
            &market,
            "SELECT a.attname, t.typname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_type t ON t.oid = a.atttypid WHERE c.relname = 'people_u' ORDER BY a.attnum",
        )
        .unwrap();
    assert!(
        columns.contains("plate") && columns.contains("text"),
        "{columns}"
    );

    let call = DataCall {
        reader: Reader::Principal(market.clone()),
        purpose: "matrix test".into(),
        kind: CallKind::Sql,
        now: city.now,
    };
    let described = city
        .rt
        .block_on(city.engine.describe_as(
            "SELECT count(*) AS n FROM transport.people_u WHERE plate = $1",
            &call,
        ))
        .unwrap();
    assert_eq!(described.parameters.len(), 1);
    for i in 0..PEOPLE {
        let result = city
            .rt
            .block_on(city.engine.query_with_params_as(
                "SELECT count(*) AS n FROM transport.people_u WHERE plate = $1",
                vec![citybrain_sql::ScalarValue::Utf8(Some(plate(i)))],
                &call,
            ))
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&result.batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| 0 "),
            "a raw plate as a parameter matched a masked row: {text}"
        );
    }
    // The hidden dataset stays hidden when only described.
    let hidden = city.rt.block_on(
        city.engine
            .describe_as("SELECT * FROM transport.people_n WHERE plate = $1", &call),
    );
    assert!(hidden.is_err());
}
