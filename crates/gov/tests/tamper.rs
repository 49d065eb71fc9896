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
    let public = public_key();
    let before = audit::verify_public(dir.path(), &public, &[]).unwrap();
    assert!(before.is_intact(), "{:?}", before.problems);
    tamper(dir.path());
    // Without the secret, with the published key only, the same tampering is found.
    let outside = audit::verify_public(dir.path(), &public, &[]).unwrap();
    assert!(
        !outside.is_intact(),
        "tampering went unnoticed by the public check"
    );
    let after = audit::verify(dir.path(), KEY).unwrap();
    assert!(!after.is_intact(), "tampering went unnoticed");
    after.problems
}

/// The published key, read the way an auditor reads it: from the file beside the trail.
fn public_key() -> ed25519_dalek::VerifyingKey {
    audit::parse_public_key(&audit::public_key_hex(KEY)).unwrap()
}

fn head(dir: &Path) -> audit::Head {
    serde_json::from_slice(&std::fs::read(dir.join(audit::HEAD_FILE)).unwrap()).unwrap()
}

#[test]
fn the_public_key_is_published_beside_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 3);
    let written = std::fs::read_to_string(dir.path().join(audit::PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(written.trim(), audit::public_key_hex(KEY));
    assert_eq!(written.trim().len(), 64);
    let h = head(dir.path());
    assert_eq!(h.seq, 3);
    assert!(h.is_signed_by(&public_key()));
    // Another hub's key does not check this head.
    let other = audit::parse_public_key(&audit::public_key_hex(b"another hub")).unwrap();
    assert!(!h.is_signed_by(&other));
    assert!(audit::parse_public_key("not a key").is_err());
}

#[test]
fn an_edit_with_recomputed_public_hashes_is_caught_by_the_signature() {
    // The forger knows the public chain's rule and recomputes every hash after the edit,
    // head included, but cannot sign the new head.
    let problems = problems_after(|dir| {
        let mut l = lines(dir);
        l[4] = l[4].replace("\"rows\":50", "\"rows\":5");
        let mut prev = String::new();
        for line in l.iter_mut() {
            let sha_at = line.rfind(",\"sha\":\"").unwrap();
            let body = format!("{}}}", &line[..sha_at]);
            use sha2::Digest;
            let sha = hex::encode(
                sha2::Sha256::new()
                    .chain_update(prev.as_bytes())
                    .chain_update(b"\n")
                    .chain_update(body.as_bytes())
                    .finalize(),
            );
            let mac_at = line.rfind(",\"mac\":\"").unwrap();
            *line = format!("{},\"sha\":\"{sha}\"{}", &line[..sha_at], &line[mac_at..]);
            prev = sha;
        }
        write_lines(dir, &l);
        let mut h = head(dir);
        h.sha = prev;
        std::fs::write(dir.join(audit::HEAD_FILE), serde_json::to_vec(&h).unwrap()).unwrap();
    });
    assert!(
        problems.iter().any(|p| p.contains("not signed")),
        "{problems:?}"
    );
}

#[test]
fn a_trail_rewound_to_an_older_head_is_caught_by_a_head_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 7);
    let older = std::fs::read(dir.path().join(audit::HEAD_FILE)).unwrap();
    let log = AuditLog::open(dir.path(), KEY).unwrap();
    for _ in 0..3 {
        log.append(Call::new(Timestamp(1), "p", "market", CallKind::Sql))
            .unwrap();
    }
    drop(log);
    // An auditor saved this head (GET /api/v1/audit/head).
    let kept = head(dir.path());
    assert_eq!(kept.seq, 10);
    // The operator cuts the last three calls and puts the older, genuinely signed head back.
    let l = lines(dir.path());
    write_lines(dir.path(), &l[..7]);
    std::fs::write(dir.path().join(audit::HEAD_FILE), older).unwrap();
    // The trail is consistent on its own: that is what a kept head is for.
    assert!(audit::verify(dir.path(), KEY).unwrap().is_intact());
    assert!(
        audit::verify_public(dir.path(), &public_key(), &[])
            .unwrap()
            .is_intact()
    );
    let v = audit::verify_public(dir.path(), &public_key(), &[kept]).unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("cut off the end")),
        "{:?}",
        v.problems
    );
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
