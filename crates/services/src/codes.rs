//! Colour codes (码) as signed tokens a scanner verifies offline.
//!
//! - **Health code** (健康码): red after a positive result in the last 14 days, until the
//!   holder has had a negative result on each of `RECOVERY_DAYS` consecutive days after it;
//!   yellow after a close contact in the last 7 days with no negative result since; green
//!   otherwise.
//! - **Talent code** (人才码): category A to E from education, professional title and
//!   salary, each category unlocking its subsidies (illustrative amounts).
//!
//! A code is `CB1.<payload>.<signature>`: the payload (JSON, base64url) says what the code
//! is, for whom (the name and id masked, for the desk to compare with the person in front of
//! it), and until when; the signature is ed25519 over `CB1.<payload>` with the city's key,
//! so anyone with the public key verifies it without calling the city. A code can be revoked
//! by its id: scanners keep the short list of revoked ids.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use citybrain_core::{Date, Timestamp};
use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Consecutive days of negative results that turn red to green.
pub const RECOVERY_DAYS: i32 = 3;
const PREFIX: &str = "CB1";

/// A health code's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Green,
    Yellow,
    Red,
}

/// What decides a health code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthFacts {
    /// (day, positive) of each result.
    pub results: Vec<(Date, bool)>,
    /// Days of close contact with a case.
    pub contacts: Vec<Date>,
}

/// The colour on `day`, and why.
pub fn health_colour(facts: &HealthFacts, day: Date) -> (Colour, String) {
    let positive = facts
        .results
        .iter()
        .filter(|(d, p)| *p && *d <= day && d.0 > day.0 - 14)
        .map(|(d, _)| *d)
        .max();
    if let Some(p) = positive {
        // Negative days after the positive, up to today: the longest run ending today or
        // before must reach RECOVERY_DAYS.
        let mut negative: Vec<i32> = facts
            .results
            .iter()
            .filter(|(d, pos)| !pos && *d > p && *d <= day)
            .map(|(d, _)| d.0)
            .collect();
        negative.sort_unstable();
        negative.dedup();
        let (mut run, mut best) = (0, 0);
        for (i, d) in negative.iter().enumerate() {
            run = if i > 0 && *d == negative[i - 1] + 1 {
                run + 1
            } else {
                1
            };
            best = best.max(run);
        }
        if best >= RECOVERY_DAYS {
            return (
                Colour::Green,
                format!("positive on {p}, then negative on {RECOVERY_DAYS} consecutive days"),
            );
        }
        return (
            Colour::Red,
            format!(
                "positive on {p}; green after negative results on {RECOVERY_DAYS} consecutive days ({best} so far)"
            ),
        );
    }
    let contact = facts
        .contacts
        .iter()
        .filter(|d| **d <= day && d.0 > day.0 - 7)
        .max();
    if let Some(c) = contact {
        let cleared = facts
            .results
            .iter()
            .any(|(d, pos)| !pos && *d > *c && *d <= day);
        if !cleared {
            return (
                Colour::Yellow,
                format!("close contact on {c}; green after a negative result"),
            );
        }
        return (
            Colour::Green,
            format!("close contact on {c}, negative since"),
        );
    }
    (
        Colour::Green,
        "no positive result in 14 days, no close contact in 7".into(),
    )
}

/// What decides a talent code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TalentFacts {
    /// phd, master, bachelor, college or other.
    pub education: String,
    /// senior, deputy_senior, intermediate, junior or none.
    pub title: String,
    /// Yearly, in fen.
    pub annual_salary: i64,
}

/// A talent category and what it unlocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Category {
    /// A (top) to E.
    pub letter: char,
    pub why: String,
    /// (subsidy, yuan) the category unlocks (illustrative).
    pub unlocks: Vec<(&'static str, i64)>,
}

/// The talent category, if any (illustrative thresholds, modelled on city talent schemes).
pub fn talent_category(f: &TalentFacts) -> Option<Category> {
    let salary_yuan = f.annual_salary / 100;
    let senior = f.title == "senior";
    let senior_or_deputy = senior || f.title == "deputy_senior";
    let (letter, why) = if (f.education == "phd" && senior) || salary_yuan >= 1_000_000 {
        (
            'A',
            "a doctorate with a senior title, or a salary of 1,000,000 yuan or more",
        )
    } else if f.education == "phd" || senior_or_deputy || salary_yuan >= 500_000 {
        (
            'B',
            "a doctorate, a (deputy) senior title, or a salary of 500,000 yuan or more",
        )
    } else if f.education == "master" || f.title == "intermediate" || salary_yuan >= 300_000 {
        (
            'C',
            "a master's degree, an intermediate title, or a salary of 300,000 yuan or more",
        )
    } else if f.education == "bachelor" || salary_yuan >= 150_000 {
        (
            'D',
            "a bachelor's degree, or a salary of 150,000 yuan or more",
        )
    } else if f.education == "college" {
        ('E', "a college diploma")
    } else {
        return None;
    };
    let unlocks = match letter {
        'A' => vec![("housing_subsidy", 1_000_000), ("children_school_place", 0)],
        'B' => vec![("housing_subsidy", 500_000), ("children_school_place", 0)],
        'C' => vec![("housing_subsidy", 150_000)],
        'D' => vec![("housing_subsidy", 50_000)],
        _ => vec![("rent_subsidy", 10_000)],
    };
    Some(Category {
        letter,
        why: why.into(),
        unlocks,
    })
}

/// What a code says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// The code's id (revocation lists name it).
    pub id: String,
    /// health or talent.
    pub kind: String,
    /// green/yellow/red, or A–E.
    pub value: String,
    /// The holder's name and id, masked, to compare with the person at the desk.
    pub name: String,
    pub id_number: String,
    /// The city's signature over the holder's full id: a desk with the card checks the
    /// code is this person's ([`holds`]); without the card it says nothing more.
    pub holder: String,
    #[serde(with = "citybrain_core::time::as_text")]
    pub issued_at: Timestamp,
    #[serde(with = "citybrain_core::time::as_text")]
    pub valid_until: Timestamp,
}

/// `张*` from 张伟; the first character kept.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().max(1))),
        None => String::new(),
    }
}

/// The first four and the last four characters of an id kept.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// The city's signing key from a 32-byte seed (derived from the hub secret).
pub fn signing_key(seed: &[u8]) -> SigningKey {
    let mut bytes = [0u8; 32];
    for (b, s) in bytes.iter_mut().zip(seed) {
        *b = *s;
    }
    SigningKey::from_bytes(&bytes)
}

/// The public key as text (base64url), for scanners.
pub fn public_key_text(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().to_bytes())
}

/// The `holder` of a code for `id_number`.
pub fn holder_mark(key: &SigningKey, id_number: &str) -> String {
    B64.encode(
        key.sign(format!("holder:{id_number}").as_bytes())
            .to_bytes(),
    )
}

/// Whether a verified code was issued for the person whose card reads `id_number`.
pub fn holds(key: &VerifyingKey, payload: &Payload, id_number: &str) -> bool {
    let Some(signature) = B64
        .decode(&payload.holder)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    key.verify(
        format!("holder:{id_number}").as_bytes(),
        &Signature::from_bytes(&signature),
    )
    .is_ok()
}

/// Signs a payload into a code.
pub fn sign(key: &SigningKey, payload: &Payload) -> String {
    let body = B64.encode(serde_json::to_vec(payload).expect("payloads serialise"));
    let signed = format!("{PREFIX}.{body}");
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", B64.encode(signature.to_bytes()))
}

/// Why a code is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("not a citybrain code (CB1.payload.signature)")]
    Malformed,
    #[error("the signature does not match: forged or altered")]
    Forged,
    #[error("expired at {0}")]
    Expired(Timestamp),
    #[error("revoked")]
    Revoked,
    #[error("the public key is not a key: {0}")]
    BadKey(String),
}

impl Refused {
    pub fn name(&self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Forged => "forged",
            Refused::Expired(_) => "expired",
            Refused::Revoked => "revoked",
            Refused::BadKey(_) => "bad_key",
        }
    }
}

/// The public key from its text (base64url), read once by a scanner.
pub fn public_key(text: &str) -> Result<VerifyingKey, Refused> {
    let bytes: [u8; 32] = B64
        .decode(text.trim())
        .map_err(|e| Refused::BadKey(e.to_string()))?
        .try_into()
        .map_err(|_| Refused::BadKey("not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| Refused::BadKey(e.to_string()))
}

/// Verifies a code with the public key, offline: signature, expiry, and the revocation
/// list.
pub fn verify(
    key: &VerifyingKey,
    code: &str,
    now: Timestamp,
    revoked: &dyn Fn(&str) -> bool,
) -> Result<Payload, Refused> {
    let code = code.trim();
    let mut parts = code.splitn(3, '.');
    let (Some(PREFIX), Some(body), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed);
    };
    let signature: [u8; 64] = B64
        .decode(signature)
        .map_err(|_| Refused::Malformed)?
        .try_into()
        .map_err(|_| Refused::Malformed)?;
    key.verify(
        format!("{PREFIX}.{body}").as_bytes(),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| Refused::Forged)?;
    let payload: Payload = B64
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Refused::Malformed)?;
    if revoked(&payload.id) {
        return Err(Refused::Revoked);
    }
    if now > payload.valid_until {
        return Err(Refused::Expired(payload.valid_until));
    }
    Ok(payload)
}

/// The code as a QR symbol in SVG (error correction M, a quiet zone of four modules).
pub fn qr_svg(code: &str) -> Result<String, String> {
    let symbol = qrcode::QrCode::with_error_correction_level(code.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| e.to_string())?;
    Ok(symbol
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> Date {
        Date::parse(t).unwrap()
    }

    #[test]
    fn red_until_three_negative_days_in_a_row_yellow_after_a_contact() {
        let mut f = HealthFacts {
            results: vec![(d("2026-11-10"), true)],
            contacts: vec![],
        };
        assert_eq!(health_colour(&f, d("2026-11-12")).0, Colour::Red);
        f.results.push((d("2026-11-12"), false));
        f.results.push((d("2026-11-13"), false));
        f.results.push((d("2026-11-15"), false));
        assert_eq!(
            health_colour(&f, d("2026-11-15")).0,
            Colour::Red,
            "a gap breaks the run"
        );
        f.results.push((d("2026-11-16"), false));
        f.results.push((d("2026-11-17"), false));
        assert_eq!(health_colour(&f, d("2026-11-17")).0, Colour::Green);
        assert_eq!(health_colour(&f, d("2026-11-30")).0, Colour::Green);
        let contact = HealthFacts {
            results: vec![],
            contacts: vec![d("2026-11-20")],
        };
        assert_eq!(health_colour(&contact, d("2026-11-22")).0, Colour::Yellow);
        assert_eq!(
            health_colour(&contact, d("2026-11-27")).0,
            Colour::Green,
            "seven days on"
        );
    }

    #[test]
    fn talent_categories() {
        let t = |e: &str, title: &str, yuan: i64| {
            talent_category(&TalentFacts {
                education: e.into(),
                title: title.into(),
                annual_salary: yuan * 100,
            })
            .map(|c| c.letter)
        };
        assert_eq!(t("phd", "senior", 300_000), Some('A'));
        assert_eq!(t("bachelor", "none", 1_200_000), Some('A'));
        assert_eq!(t("phd", "none", 200_000), Some('B'));
        assert_eq!(t("master", "none", 100_000), Some('C'));
        assert_eq!(t("bachelor", "junior", 100_000), Some('D'));
        assert_eq!(t("college", "none", 60_000), Some('E'));
        assert_eq!(t("other", "none", 60_000), None);
    }

    #[test]
    fn a_code_verifies_offline_and_a_forged_expired_or_revoked_one_does_not() {
        let key = signing_key(&[7u8; 32]);
        let public = public_key(&public_key_text(&key)).unwrap();
        let payload = Payload {
            id: "C0000001".into(),
            kind: "health".into(),
            value: "green".into(),
            name: mask_name("张伟"),
            id_number: mask_id("330106199001011234"),
            holder: holder_mark(&key, "330106199001011234"),
            issued_at: Timestamp(1_000),
            valid_until: Timestamp(2_000),
        };
        assert_eq!(payload.name, "张*");
        assert_eq!(payload.id_number, "3301**********1234");
        let code = sign(&key, &payload);
        let none = |_: &str| false;
        assert_eq!(
            verify(&public, &code, Timestamp(1_500), &none).unwrap(),
            payload
        );
        assert_eq!(
            verify(&public, &code, Timestamp(2_001), &none)
                .unwrap_err()
                .name(),
            "expired"
        );
        assert_eq!(
            verify(&public, &code, Timestamp(1_500), &|id| id == "C0000001").unwrap_err(),
            Refused::Revoked
        );
        // A payload altered to red → green keeps the old signature: refused.
        let mut parts: Vec<&str> = code.split('.').collect();
        let red = Payload {
            value: "red".into(),
            ..payload.clone()
        };
        let altered_body = B64.encode(serde_json::to_vec(&red).unwrap());
        parts[1] = &altered_body;
        assert_eq!(
            verify(&public, &parts.join("."), Timestamp(1_500), &none).unwrap_err(),
            Refused::Forged
        );
        // Signed with another key: refused.
        let other = sign(&signing_key(&[8u8; 32]), &payload);
        assert_eq!(
            verify(&public, &other, Timestamp(1_500), &none).unwrap_err(),
            Refused::Forged
        );
        assert_eq!(
            verify(&public, "hello", Timestamp(1_500), &none).unwrap_err(),
            Refused::Malformed
        );
        assert!(qr_svg(&code).unwrap().starts_with("<?xml"));
        assert!(holds(&public, &payload, "330106199001011234"));
        assert!(!holds(&public, &payload, "330106199001011235"));
    }
}
