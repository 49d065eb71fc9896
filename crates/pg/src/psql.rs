//! psql's `\d NAME` and `\d+ NAME`, answered from the modelled catalog.
//!
//! psql describes a table with eight catalog queries written for PostgreSQL's own planner:
//! `OPERATOR(pg_catalog.~)` and `COLLATE pg_catalog.default` in the name lookup, `regtype`
//! casts and a join on the TOAST table in the table's flags, correlated subqueries on
//! `pg_attrdef` and `pg_collation` for the columns, then policies, extended statistics,
//! publications and inheritance. A read-only hub has no defaults, collations, TOAST,
//! policies, statistics objects, publications or inheritance, so each query is recognised
//! by what only it says and rewritten to the plain query over `pg_class` and
//! `pg_attribute` that gives the same answer (the footers: none). The rewritten query is an
//! ordinary governed call: the caller sees only the tables and columns its listing holds.
//! The queries are psql 15's (`psql -E` against PostgreSQL 15); others pass unchanged.

/// The query to run instead of `query`, when `query` is one of psql's describe queries.
pub fn rewrite(query: &str) -> Option<String> {
    // The name lookup (also `\dt PATTERN`, `\dn PATTERN`): PostgreSQL's operator syntax
    // and the collation clause, which the planner does not take, written plainly.
    if query.contains("OPERATOR(pg_catalog.") || query.contains("COLLATE pg_catalog.default") {
        return Some(
            query
                .replace("OPERATOR(pg_catalog.~)", "~")
                .replace("OPERATOR(pg_catalog.!~)", "!~")
                .replace(" COLLATE pg_catalog.default", ""),
        );
    }
    if query.starts_with("SELECT c.relchecks, c.relkind, c.relhasindex") {
        let oid = oid_after(query, "WHERE c.oid = '")?;
        return Some(format!(
            "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, \
             c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, \
             '' AS reloptions, c.reltablespace, '' AS reloftype, c.relpersistence, \
             c.relreplident, 'heap' AS amname \
             FROM pg_catalog.pg_class c WHERE c.oid = {oid}"
        ));
    }
    if query.starts_with("SELECT a.attname,") && query.contains("FROM pg_catalog.pg_attrdef d") {
        let oid = oid_after(query, "WHERE a.attrelid = '")?;
        // `\d+` asks for storage, compression, statistics target and description too.
        let more = if query.contains("a.attstorage") {
            ", CASE WHEN a.atttypid IN (25, 17) THEN 'x' ELSE 'p' END AS attstorage, \
             '' AS attcompression, CAST(NULL AS INT) AS attstattarget, \
             pg_catalog.col_description(a.attrelid, a.attnum)"
        } else {
            ""
        };
        return Some(format!(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), \
             CAST(NULL AS TEXT) AS attdefault, a.attnotnull, CAST(NULL AS TEXT) AS attcollation, \
             a.attidentity, a.attgenerated{more} \
             FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ));
    }
    // The footers: nothing of the kind exists in a hub.
    let footers: [(&str, usize); 4] = [
        ("FROM pg_catalog.pg_policy pol", 6),
        ("FROM pg_catalog.pg_statistic_ext", 9),
        ("FROM pg_catalog.pg_publication p", 3),
        ("pg_catalog.pg_inherits i", 4),
    ];
    for (marker, columns) in footers {
        if query.contains(marker) && query.contains("'") && oid_in(query) {
            let nulls: Vec<String> = (1..=columns)
                .map(|i| format!("CAST(NULL AS TEXT) AS c{i}"))
                .collect();
            return Some(format!("SELECT {} WHERE false", nulls.join(", ")));
        }
    }
    None
}

/// The number quoted right after `marker` (`WHERE c.oid = '16385'`).
fn oid_after(query: &str, marker: &str) -> Option<u32> {
    let rest = &query[query.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether the query names a table by a quoted oid, as psql's footers all do.
fn oid_in(query: &str) -> bool {
    [
        "relid = '",
        "inhrelid = '",
        "inhparent = '",
        "pc.oid ='",
        "prrelid = '",
    ]
    .iter()
    .any(|m| oid_after(query, m).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_lookup_is_written_plainly() {
        let q = "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(x)$' COLLATE pg_catalog.default";
        assert_eq!(
            rewrite(q).unwrap(),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(x)$'"
        );
    }

    #[test]
    fn the_table_and_its_columns_are_read_by_oid_and_footers_are_empty() {
        let flags = "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules FROM pg_catalog.pg_class c\n LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)\nWHERE c.oid = '16390';";
        assert!(rewrite(flags).unwrap().ends_with("WHERE c.oid = 16390"));
        let policies = "SELECT pol.polname FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16390' ORDER BY 1;";
        assert!(rewrite(policies).unwrap().ends_with("WHERE false"));
        // An injection through the oid is not a number, so nothing is rewritten with it.
        let forged = "SELECT c.relchecks, c.relkind, c.relhasindex FROM x WHERE c.oid = '1 OR 1=1'";
        assert!(rewrite(forged).unwrap().ends_with("WHERE c.oid = 1"));
        assert_eq!(rewrite("SELECT 1"), None);
    }
}
