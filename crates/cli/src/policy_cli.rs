//! `citybrain policy ...`: rules as code for policy delivery.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Loads every `.policy` file under `dir` (or one file), type-checks it and runs its
/// in-file tests; prints every problem as `file:line:col: message`.
pub fn check(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    if dir.is_file() {
        files.push(dir.to_path_buf());
    } else {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "policy") {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no .policy files in {}", dir.display());
    }
    let (mut problems, mut tests, mut failed) = (0, 0, 0);
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        match citybrain_rules::load(&text) {
            Err(diags) => {
                for d in &diags {
                    println!(
                        "{}:{}:{}: {}",
                        file.display(),
                        d.pos.line,
                        d.pos.col,
                        d.message
                    );
                }
                problems += diags.len();
            }
            Ok(policy) => {
                tests += policy.ast.tests.len();
                for f in policy.run_tests() {
                    println!(
                        "{}:{}:{}: test {:?} failed: {}",
                        file.display(),
                        f.pos.line,
                        f.pos.col,
                        f.test,
                        f.message
                    );
                    failed += 1;
                }
            }
        }
    }
    println!(
        "{} policies: {problems} problems, {tests} tests, {failed} failed",
        files.len()
    );
    if problems > 0 || failed > 0 {
        bail!("fix the problems above (each names its file, line and column)");
    }
    Ok(())
}
