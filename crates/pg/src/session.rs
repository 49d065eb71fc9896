//! Statements about the session rather than the data: transactions, settings, `SHOW`.
//!
//! Clients send these around their queries (psycopg and SQLAlchemy open a transaction
//! before the first query, JDBC sets `extra_float_digits`, BI tools `SHOW` settings).
//! citybrain's SQL is read-only, so a transaction is only a bracket: each statement sees
//! the data committed when it starts, as at PostgreSQL's READ COMMITTED. `SET purpose`
//! (or `citybrain.purpose`) names why the session reads, for the audit trail, as the
//! `purpose` of `POST /api/v1/sql` does.

/// What a statement asks of the session, or `Query` for a statement for the SQL engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    /// `SET name = value`; only the purpose is kept, other settings are accepted and
    /// ignored (their values are PostgreSQL's defaults anyway).
    Set {
        name: String,
        value: String,
    },
    Show(String),
    /// Accepted with this command tag and no effect (`RESET`, `DISCARD`, `SAVEPOINT`, ...).
    Ignored(&'static str),
    Query,
}

/// The setting that carries a session's purpose.
pub fn is_purpose(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "purpose" | "citybrain.purpose"
    )
}

/// Reads what `sql` (one statement) asks.
pub fn classify(sql: &str) -> Command {
    let text = sql.trim().trim_end_matches(';').trim();
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let first = words.first().copied().unwrap_or("");
    match first {
        "begin" | "start" => Command::Begin,
        "commit" | "end" => Command::Commit,
        "rollback" | "abort" => {
            if words.get(1) == Some(&"to") {
                Command::Ignored("ROLLBACK")
            } else {
                Command::Rollback
            }
        }
        "savepoint" => Command::Ignored("SAVEPOINT"),
        "release" => Command::Ignored("RELEASE"),
        "reset" => Command::Ignored("RESET"),
        "discard" => Command::Ignored("DISCARD ALL"),
        "deallocate" => Command::Ignored("DEALLOCATE"),
        "set" => parse_set(text),
        "show" if words.len() > 1 && words[1] != "tables" && words[1] != "columns" => {
            // `SHOW TABLES` / `SHOW COLUMNS` are DataFusion's own and go to the engine.
            Command::Show(text[4..].trim().to_string())
        }
        _ => Command::Query,
    }
}

fn parse_set(text: &str) -> Command {
    // SET [SESSION | LOCAL] name { = | TO } value
    let rest = text[3..].trim_start();
    let rest = strip_word(rest, "session")
        .or_else(|| strip_word(rest, "local"))
        .unwrap_or(rest);
    if strip_word(rest, "transaction").is_some() || strip_word(rest, "characteristics").is_some() {
        return Command::Ignored("SET");
    }
    let (name, value) = match rest.find(['=', ' ']) {
        Some(at) => {
            let name = rest[..at].trim();
            let value = rest[at..].trim_start();
            let value = value
                .strip_prefix('=')
                .or_else(|| strip_word(value, "to"))
                .unwrap_or(value)
                .trim();
            (name, value)
        }
        None => (rest.trim(), ""),
    };
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .map(|v| v.replace("''", "'"))
        .unwrap_or_else(|| value.to_string());
    Command::Set {
        name: name.to_string(),
        value,
    }
}

/// `text` without its first word when that word is `word` (case-insensitive).
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let tail = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && (tail.is_empty() || tail.starts_with(char::is_whitespace)))
        .then(|| tail.trim_start())
}

/// Splits a simple-protocol query string into statements at semicolons outside quotes,
/// identifiers and comments. Empty statements are dropped.
pub fn split(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// The purpose given at connection time: libpq's `options` parameter as
/// `-c purpose=...` (or `-c citybrain.purpose=...`), spaces escaped as `\ `.
pub fn purpose_from_options(options: &str) -> Option<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut found = None;
    let mut iter = words.iter().peekable();
    while let Some(w) = iter.next() {
        let setting = if w == "-c" {
            iter.next().map(String::as_str)
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest)
        } else {
            w.strip_prefix("--")
        };
        if let Some((name, value)) = setting.and_then(|s| s.split_once('='))
            && is_purpose(name)
        {
            found = Some(value.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_told_from_queries() {
        assert_eq!(classify("BEGIN"), Command::Begin);
        assert_eq!(classify("start transaction read only;"), Command::Begin);
        assert_eq!(classify("COMMIT"), Command::Commit);
        assert_eq!(classify("rollback"), Command::Rollback);
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT a"),
            Command::Ignored("ROLLBACK")
        );
        assert_eq!(
            classify("SET purpose = 'monthly report'"),
            Command::Set {
                name: "purpose".into(),
                value: "monthly report".into()
            }
        );
        assert_eq!(
            classify("set session citybrain.purpose to 'it''s ours'"),
            Command::Set {
                name: "citybrain.purpose".into(),
                value: "it's ours".into()
            }
        );
        assert_eq!(
            classify("SET extra_float_digits = 3"),
            Command::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            }
        );
        assert_eq!(
            classify("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Command::Ignored("SET")
        );
        assert_eq!(
            classify("SHOW transaction isolation level"),
            Command::Show("transaction isolation level".into())
        );
        assert_eq!(classify("SHOW TABLES"), Command::Query);
        assert_eq!(classify("select 1"), Command::Query);
        assert_eq!(
            classify("  WITH x AS (SELECT 1) SELECT * FROM x"),
            Command::Query
        );
    }

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        assert_eq!(split("BEGIN; SELECT 1;"), vec!["BEGIN", " SELECT 1"]);
        assert_eq!(split("SELECT ';' AS a"), vec!["SELECT ';' AS a"]);
        assert_eq!(
            split("SELECT 'it''s; x'; SELECT 2"),
            vec!["SELECT 'it''s; x'", " SELECT 2"]
        );
        assert_eq!(
            split("SELECT \"a;b\" FROM t"),
            vec!["SELECT \"a;b\" FROM t"]
        );
        assert_eq!(split("SELECT 1 -- a; b\n"), vec!["SELECT 1 -- a; b\n"]);
        assert_eq!(split("SELECT /* ; */ 1"), vec!["SELECT /* ; */ 1"]);
        assert!(split(" ; ;").is_empty());
    }

    #[test]
    fn purpose_comes_from_libpq_options() {
        assert_eq!(
            purpose_from_options("-c purpose=monthly\\ report"),
            Some("monthly report".into())
        );
        assert_eq!(
            purpose_from_options("-ccitybrain.purpose=audit --statement_timeout=5"),
            Some("audit".into())
        );
        assert_eq!(purpose_from_options("-c search_path=traffic"), None);
    }
}
