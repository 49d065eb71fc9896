//! Tampering with the audit trail in each way is detected by `verify`.

use std::path::Path;

use citybrain_core::{DatasetName, Timestamp};
use citybrain_gov::audit::{self, LOG_FILE};
use citybrain_gov::{AuditLog, Call, CallKind, Touch};

const KEY: &[u8] = b"test audit key";

fn trail(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, KEY).unwrap();
    for i in 1..=n {
        let mut call = Call::new(
            Timestamp(i as i64 * 1_000_000),
            "market_analyst",
            "market",
            CallKind::Sql,
        );
        call.datasets.push(Touch {
            dataset: DatasetName::parse("transport.anpr_passages").unwrap(),
            fields: vec!["plate".into()],
        });
        call.rows = i * 10;
        call.purpose = "delivery study".into();
        log.append(call).unwrap();
    }
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(LOG_FILE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join(LOG_FILE), text).unwrap();
}

fn problems_after(tamper: impl FnOnce(&Path)) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 10);
    let before = audit::verify(dir.path(), KEY).unwrap();
    assert!(before.is_intact(), "{:?}", before.problems);
    assert_eq!(before.records, 10);
    tamper(dir.path());
    let after = audit::verify(dir.path(), KEY).unwrap();
    assert!(!after.is_intact(), "tampering went unnoticed");
    after.problems
}

#[test]
fn an_edited_record_is_detected() {
    let problems = problems_after(|dir| {
        let mut l = lines(dir);
        l[4] = l[4].replace("\"rows\":50", "\"rows\":5");
        write_lines(dir, &l);
    });
    assert!(problems[0].contains("record 5 was altered"), "{problems:?}");
}

#[test]
fn an_edited_purpose_is_detected_even_with_the_same_length() {
    let problems = problems_after(|dir| {
        let mut l = lines(dir);
        l[2] = l[2].replace("delivery study", "delivery audit");
        write_lines(dir, &l);
    });
    assert!(problems[0].contains("record 3 was altered"), "{problems:?}");
}

#[test]
fn a_deleted_record_is_detected() {
    let problems = problems_after(|dir| {
        let mut l = lines(dir);
        l.remove(4);
        write_lines(dir, &l);
    });
    assert!(
        problems
            .iter()
            .any(|p| p.contains("record 6 where 5 should be")),
        "{problems:?}"
    );
}

#[test]
fn reordered_records_are_detected() {
    let problems = problems_after(|dir| {
        let mut l = lines(dir);
        l.swap(3, 4);
        write_lines(dir, &l);
    });
    assert!(
        problems.iter().any(|p| p.contains("deleted or reordered")),
        "{problems:?}"
    );
}

#[test]
fn records_cut_off_the_end_are_detected() {
    let problems = problems_after(|dir| {
        let l = lines(dir);
        write_lines(dir, &l[..7]);
    });
    assert!(
        problems.iter().any(|p| p.contains("cut off the end")),
        "{problems:?}"
    );
}

#[test]
fn a_file_truncated_mid_record_is_detected() {
    let problems = problems_after(|dir| {
        let path = dir.join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 40).unwrap();
    });
    assert!(
        problems.iter().any(|p| p.contains("truncated")),
        "{problems:?}"
    );
}

#[test]
fn a_removed_head_is_detected() {
    let problems = problems_after(|dir| {
        std::fs::remove_file(dir.join(audit::HEAD_FILE)).unwrap();
    });
    assert!(
        problems.iter().any(|p| p.contains("head.json")),
        "{problems:?}"
    );
}

#[test]
fn a_rewritten_chain_without_the_key_is_detected() {
    // A forger who recomputes plain hashes cannot produce the keyed MACs.
    let problems = problems_after(|dir| {
        let other = tempfile::tempdir().unwrap();
        let log = AuditLog::open(other.path(), b"forger's key").unwrap();
        for i in 1..=10u64 {
            log.append(Call::new(
                Timestamp(i as i64),
                "nobody",
                "market",
                CallKind::Sql,
            ))
            .unwrap();
        }
        drop(log);
        std::fs::copy(other.path().join(LOG_FILE), dir.join(LOG_FILE)).unwrap();
    });
    assert!(problems.len() >= 10, "{problems:?}");
}
