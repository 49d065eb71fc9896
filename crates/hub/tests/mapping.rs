//! Feed mappings: checkpoint exports in their own shape stored as the hub's records, with
//! refusals that name the export's columns.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use citybrain_core::{DatasetName, TimeZone, Timestamp};
use citybrain_hub::decode::{Decoded, decode_mapped_within};
use citybrain_hub::mapping::Mapper;
use citybrain_hub::{
    DatasetDef, DecodeError, Format, Hub, HubConfig, HubError, IngestLimits, OnError,
};

/// The demo's passages definition, with the checkpoint export mappings it ships.
const DEF: &str = include_str!("../../gen/definitions/transport.anpr_passages.toml");

fn def() -> DatasetDef {
    let def = DatasetDef::from_file_text("transport.anpr_passages.toml", DEF).unwrap();
    assert!(def.check().is_empty(), "{:?}", def.check());
    def
}

fn decode(def: &DatasetDef, mapping: &str, zone: &str, format: Format, body: &str) -> Decoded {
    let zone = TimeZone::parse(zone).unwrap();
    let mapper = Mapper::new(def, mapping, &zone).unwrap();
    decode_mapped_within(
        def,
        Some(&mapper),
        format,
        body.as_bytes(),
        &IngestLimits::UNBOUNDED,
    )
    .unwrap()
}

/// ts as RFC 3339, checkpoint, plate, lane, speed.
type Row = (String, i64, String, Option<i64>, Option<f64>);

fn rows(batch: &RecordBatch) -> Vec<Row> {
    let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
    let cp = batch.column(1).as_primitive::<Int64Type>();
    let plate = batch.column(2).as_string::<i32>();
    let lane = batch.column(3).as_primitive::<Int64Type>();
    let speed = batch.column(4).as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|i| {
            (
                Timestamp(ts.value(i)).to_string(),
                cp.value(i),
                plate.value(i).to_string(),
                lane.is_valid(i).then(|| lane.value(i)),
                speed.is_valid(i).then(|| speed.value(i)),
            )
        })
        .collect()
}

#[test]
fn a_checkpoint_export_is_stored_in_the_hubs_shape() {
    let def = def();
    // Local time without a zone, ids as text, plates with the separator, full-width
    // characters, spaces and lower case, and columns the hub has no use for.
    let body = concat!(
        r#"{"hphm":"浙A·12345","kkbh":"330100000017","jgsj":"2026-03-02 08:15:30","cdbh":"2","clsd":"41.5","hpys":"蓝","tpurl":"http://x/1.jpg"}"#,
        "\n",
        r#"{"hphm":"浙Ａ１２３４６","kkbh":330100000018,"jgsj":"2026/03/02 23:59:59","cdbh":1}"#,
        "\n",
        r#"{"hphm":" 浙a d1234 ","kkbh":"330100000017","jgsj":"2026-03-03T00:00:00"}"#,
        "\n",
    );
    let decoded = decode(&def, "kkbh_export", "Asia/Shanghai", Format::Ndjson, body);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    assert_eq!(
        rows(&decoded.batch),
        vec![
            (
                "2026-03-02T00:15:30Z".into(),
                330100000017,
                "浙A12345".into(),
                Some(2),
                Some(41.5)
            ),
            (
                "2026-03-02T15:59:59Z".into(),
                330100000018,
                "浙A12346".into(),
                Some(1),
                None
            ),
            (
                "2026-03-02T16:00:00Z".into(),
                330100000017,
                "浙AD1234".into(),
                None,
                None
            ),
        ]
    );

    // The same passages as an upper-case CSV with compact times.
    let csv = "HPHM,KKBH,JGSJ,CDBH,CLSD,FXBH\n\
               浙A·12345,330100000017,20260302081530,2,41.5,01\n\
               浙Ａ１２３４６,330100000018,20260302235959,1,,02\n";
    let decoded = decode(&def, "kkbh_compact", "Asia/Shanghai", Format::Csv, csv);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let got = rows(&decoded.batch);
    assert_eq!(got[0].0, "2026-03-02T00:15:30Z");
    assert_eq!(
        got[1],
        (
            "2026-03-02T15:59:59Z".into(),
            330100000018,
            "浙A12346".into(),
            Some(1),
            None
        )
    );

    // Camera pushes in epoch milliseconds.
    let push = r#"{"plateNo":"豫A88888","deviceId":"7","passTime":1772410530250,"laneNo":3,"speed":52,"extra":{"a":1}}"#;
    let decoded = decode(&def, "camera_push", "UTC", Format::Ndjson, push);
    assert_eq!(
        rows(&decoded.batch),
        vec![(
            "2026-03-02T00:15:30.250000Z".into(),
            7,
            "豫A88888".into(),
            Some(3),
            Some(52.0)
        )]
    );
}

#[test]
fn local_times_follow_the_zone_with_its_clock_changes() {
    let def = def();
    let body = concat!(
        r#"{"hphm":"A1","kkbh":1,"jgsj":"2026-03-29 01:30:00"}"#,
        "\n",
        r#"{"hphm":"A2","kkbh":1,"jgsj":"2026-03-29 03:30:00"}"#,
        "\n",
        // A written offset wins over the zone.
        r#"{"hphm":"A3","kkbh":1,"jgsj":"2026-03-29 03:30:00+08:00"}"#,
        "\n",
    );
    let decoded = decode(&def, "kkbh_export", "Europe/Berlin", Format::Ndjson, body);
    let ts: Vec<String> = rows(&decoded.batch).into_iter().map(|r| r.0).collect();
    assert_eq!(
        ts,
        [
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-28T19:30:00Z"
        ]
    );
}

#[test]
fn refused_records_name_the_source_column() {
    let def = def();
    let body = concat!(
        r#"{"hphm":"浙A12345","kkbh":"KK-17","jgsj":"2026-03-02 08:15:30"}"#,
        "\n",
        r#"{"hphm":"浙A12345","kkbh":"17","jgsj":"02/03/2026 08:15"}"#,
        "\n",
        r#"{"kkbh":"17","jgsj":"2026-03-02 08:15:30"}"#,
        "\n",
    );
    let decoded = decode(&def, "kkbh_export", "Asia/Shanghai", Format::Ndjson, body);
    assert_eq!(decoded.batch.num_rows(), 0);
    let problems: Vec<String> = decoded
        .rejected
        .iter()
        .flat_map(|r| r.problems.iter().map(|p| p.to_string()))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("line 1, field 'kkbh'")
            && problems[0].contains("checkpoint_id")
            && problems[0].contains("KK-17"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with("line 2, field 'jgsj'") && problems[1].contains("local"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].starts_with("line 3, field 'hphm'") && problems[2].contains("required"),
        "{}",
        problems[2]
    );

    // A CSV header without the column a required field is mapped from.
    let zone = TimeZone::utc();
    let mapper = Mapper::new(&def, "kkbh_compact", &zone).unwrap();
    let e = decode_mapped_within(
        &def,
        Some(&mapper),
        Format::Csv,
        b"HPHM,JGSJ\nA,20260302081530\n",
        &IngestLimits::UNBOUNDED,
    )
    .unwrap_err();
    assert!(e.to_string().contains("'KKBH'"), "{e}");
    // Without ignore_others, a column neither mapped nor ignored is refused by name.
    let mut strict = def.clone();
    strict
        .mappings
        .get_mut("kkbh_export")
        .unwrap()
        .ignore_others = false;
    strict.mappings.get_mut("kkbh_export").unwrap().ignore = vec!["tpurl".into()];
    let decoded = decode(
        &strict,
        "kkbh_export",
        "UTC",
        Format::Ndjson,
        r#"{"hphm":"A","kkbh":1,"jgsj":"2026-03-02 08:15:30","tpurl":"x","hpys":"蓝"}"#,
    );
    assert_eq!(
        decoded.rejected[0].problems[0].field.as_deref(),
        Some("hpys")
    );
}

#[test]
fn mappings_are_checked_with_the_definition() {
    let mut text = DEF.to_string();
    text.push_str(
        "\n[mappings.bad]\n[mappings.bad.fields]\nno_such = { from = \"x\" }\nlane = { from = \"x\", time = \"local\" }\nspeed_kmh = { from = \"x\" }\nplate = { value = 12 }\n",
    );
    let def = DatasetDef::from_file_text("d.toml", &text).unwrap();
    let problems: Vec<String> = def.check().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 4, "{problems:?}");
    for p in &problems {
        assert!(p.contains("mapping 'bad'"), "{p}");
    }
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no_such") && p.contains("no such field"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("lane") && p.contains("timestamp"))
    );
    assert!(problems.iter().any(|p| p.contains("already fills")));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("plate") && p.contains("constant"))
    );
}

#[test]
fn the_hub_ingests_through_a_mapping_in_the_citys_zone() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::open(
        dir.path(),
        HubConfig {
            zone: TimeZone::parse("Asia/Urumqi").unwrap(),
            ..HubConfig::default()
        },
    )
    .unwrap();
    hub.create_dataset(def(), Timestamp(0)).unwrap();
    let name = DatasetName::parse("transport.anpr_passages").unwrap();
    let body = r#"{"hphm":"新A12345","kkbh":"1","jgsj":"2026-03-02 08:00:00"}"#;
    let report = hub
        .ingest_mapped(
            &name,
            Format::Ndjson,
            "kkbh_export",
            body.as_bytes(),
            OnError::Reject,
            Timestamp(1),
        )
        .unwrap();
    assert_eq!(report.accepted, 1);
    let e = hub
        .ingest_mapped(
            &name,
            Format::Ndjson,
            "nope",
            body.as_bytes(),
            OnError::Reject,
            Timestamp(2),
        )
        .unwrap_err();
    assert!(matches!(e, HubError::Decode(DecodeError::Mapping(_))));
    assert!(e.to_string().contains("kkbh_export"), "{e}");
    let e = hub
        .ingest_mapped(
            &name,
            Format::Parquet,
            "kkbh_export",
            b"PAR1",
            OnError::Reject,
            Timestamp(3),
        )
        .unwrap_err();
    assert!(e.to_string().contains("NDJSON and CSV"), "{e}");
    // Stored at 08:00 Ürümqi time (UTC+6), the hub's zone, since the mapping names none.
    let snapshot = hub.snapshot(&name).unwrap();
    assert_eq!(snapshot.rows(), 1);
    assert_eq!(rows(&snapshot.tail[0])[0].0, "2026-03-02T02:00:00Z");
}

#[test]
fn any_other_time_layout_through_a_strftime_pattern() {
    let mut text = DEF.to_string();
    text.push_str(
        "\n[mappings.dmy]\n[mappings.dmy.fields]\nts = { from = \"t\", time = \"pattern\", pattern = \"%d/%m/%Y %H:%M\" }\ncheckpoint_id = { from = \"k\" }\nplate = { from = \"p\" }\n",
    );
    let def = DatasetDef::from_file_text("d.toml", &text).unwrap();
    assert!(def.check().is_empty(), "{:?}", def.check());
    let body = "{\"t\":\"2/3/2026 8:15\",\"k\":1,\"p\":\"A\"}\n{\"t\":\"2026-03-02\",\"k\":1,\"p\":\"A\"}\n";
    let decoded = decode(&def, "dmy", "Asia/Shanghai", Format::Ndjson, body);
    assert_eq!(rows(&decoded.batch)[0].0, "2026-03-02T00:15:00Z");
    let p = &decoded.rejected[0].problems[0];
    assert_eq!(p.field.as_deref(), Some("t"));
    assert!(p.reason.contains("%d/%m/%Y %H:%M"), "{}", p.reason);
    // A pattern without time = "pattern", and one chrono cannot read, are refused up front.
    let bad = format!(
        "{DEF}\n[mappings.x]\n[mappings.x.fields]\nts = {{ from = \"t\", time = \"pattern\", pattern = \"%Q\" }}\nplate = {{ from = \"p\", pattern = \"%Y\" }}\n"
    );
    let def = DatasetDef::from_file_text("d.toml", &bad).unwrap();
    let problems: Vec<String> = def.check().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
}
