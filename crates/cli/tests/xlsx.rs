//! XLSX exports (issue 24, item 4): a query's result and a dataset's records as an Excel
//! workbook, read back with openpyxl (PyPI, as a spreadsheet program reads it): the same
//! values as the JSON answer, numbers as numbers, instants as date-times, personal fields
//! as masked as anywhere else; `citybrain sql --format xlsx --out` writes one.

mod common;

use std::process::Command;

use common::{department_admin, start};
use serde_json::{Value, json};

const DEF: &str = r#"name = "market.fines"
owner = "market"
sharing = "conditional"
description = "Fines, to export."
event_time = "issued_at"

[[fields]]
name = "issued_at"
type = "timestamp"

[[fields]]
name = "day"
type = "date"

[[fields]]
name = "firm"
type = "string"

[[fields]]
name = "inspector"
type = "string"
class = "personal"

[[fields]]
name = "amount"
type = "money"

[[fields]]
name = "rate"
type = "float"

[[fields]]
name = "paid"
type = "bool"

[[fields]]
name = "at"
type = "geo"
"#;

/// The workbook's rows as JSON, as openpyxl reads its cells (date-times as ISO text).
fn read_back(path: &std::path::Path) -> Value {
    let script = r#"
import json, sys, datetime, openpyxl
book = openpyxl.load_workbook(sys.argv[1])
sheet = book.active
def cell(c):
    v = c.value
    if isinstance(v, (datetime.datetime, datetime.date)):
        return {"date": v.isoformat(), "numeric": c.is_date}
    return v
print(json.dumps({"title": sheet.title, "bold": sheet.cell(1, 1).font.b,
                  "rows": [[cell(c) for c in row] for row in sheet.iter_rows()]}))
"#;
    common::python_json(script, path)
}

#[test]
fn results_and_records_export_as_workbooks_with_typed_cells_and_masks_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let market = department_admin(&server, "market");
    let (status, text) = server.post_as(
        &market,
        "/api/v1/datasets",
        "application/toml",
        DEF.as_bytes(),
    );
    assert_eq!(status, 201, "{text}");
    server.ingest_as(&market, "market.fines", concat!(
        r#"{"issued_at":"2026-12-01T08:30:15Z","day":"2026-12-01","firm":"杭州甲公司","inspector":"王五","amount":1234567,"rate":0.25,"paid":true,"at":{"lon":120.15,"lat":30.27}}"#, "\n",
        r#"{"issued_at":"2026-12-02T23:59:59Z","day":"2026-12-02","firm":"Firm B","inspector":"Li Si","amount":50,"rate":1.5,"paid":false,"at":{"lon":120.2,"lat":30.3}}"#, "\n",
    ));
    let sql = "SELECT issued_at, day, firm, inspector, amount, rate, paid, at FROM market.fines ORDER BY issued_at";
    let post = |token: &str, format: &str| {
        let response = common::agent()
            .post(&format!("{}/api/v1/sql", server.base))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(
                json!({"sql": sql, "purpose": "test: export", "format": format})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        (status, kind, response.into_body().read_to_vec().unwrap())
    };
    let (status, kind, bytes) = post(&market, "xlsx");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(
        kind.as_deref(),
        Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    let path = dir.path().join("fines.xlsx");
    std::fs::write(&path, &bytes).unwrap();
    let book = read_back(&path);
    assert_eq!(book["title"], "result");
    assert_eq!(book["bold"], true);
    let rows = book["rows"].as_array().unwrap();
    assert_eq!(
        rows[0],
        json!([
            "issued_at (UTC)",
            "day",
            "firm",
            "inspector",
            "amount",
            "rate",
            "paid",
            "at"
        ])
    );
    assert_eq!(rows.len(), 3);
    // The JSON answer, cell by cell: numbers stay numbers, money integer fen.
    let (_, _, answer) = post(&market, "json");
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        rows[1][0],
        json!({"date": "2026-12-01T08:30:15", "numeric": true}),
        "{book}"
    );
    assert_eq!(
        rows[1][1],
        json!({"date": "2026-12-01T00:00:00", "numeric": true}),
        "{book}"
    );
    assert_eq!(rows[1][2], "杭州甲公司");
    assert_eq!(rows[1][3], answer[0]["inspector"]);
    assert_eq!(rows[1][4], 1234567);
    assert_eq!(rows[1][5], 0.25);
    assert_eq!(rows[1][6], true);
    assert_eq!(rows[1][7], "POINT(120.15 30.27)");
    assert_eq!(
        rows[2][0],
        json!({"date": "2026-12-02T23:59:59", "numeric": true})
    );
    assert_eq!(rows[2][6], false);

    // Another department with a grant sees the inspector masked in the workbook too.
    let transport = server.token.clone();
    let (status, text) = server.post_as(&transport, "/api/v1/grants", "application/json", json!({"dataset": "market.fines", "purpose": "test: export", "fields": [], "raw": [], "days": 1}).to_string().as_bytes());
    assert!(status == 201 || status == 200, "{text}");
    let grant: Value = serde_json::from_str(&text).unwrap();
    let (status, text) = server.post_as(
        &market,
        &format!("/api/v1/grants/{}/approve", grant["id"]),
        "application/json",
        br#"{"reason": "masked"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, _, bytes) = post(&transport, "xlsx");
    assert_eq!(status, 200);
    std::fs::write(&path, &bytes).unwrap();
    let masked = read_back(&path);
    let text = masked.to_string();
    assert!(
        !text.contains("王五") && !text.contains("Li Si"),
        "a personal field left in the workbook: {text}"
    );
    assert!(
        masked["rows"][1][3].as_str().unwrap().starts_with("ps_"),
        "{text}"
    );

    // The records export and the CLI.
    let (status, _) = server.get(
        "/api/v1/datasets/market.fines/records?format=xlsx",
        Some(&market),
    );
    assert_eq!(status, 200);
    let token_file = dir.path().join("market.token");
    std::fs::write(&token_file, &market).unwrap();
    let out_file = dir.path().join("cli.xlsx");
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["sql", sql, "--format", "xlsx", "--out"])
        .arg(&out_file)
        .args(["--server", &server.base, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_back(&out_file)["rows"], book["rows"]);
}
