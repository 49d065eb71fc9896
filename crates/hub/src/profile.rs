//! The city profile's file in the data directory (`citybrain.toml`): read, checked, and
//! written with comments a person can edit (`citybrain init`).

use std::path::Path;

use citybrain_core::CityProfile;
use citybrain_core::city::MapView;

/// The profile's file name in the data directory.
pub const PROFILE_FILE: &str = "citybrain.toml";

/// Reads and checks a profile file; the error names the file and every problem.
pub fn read_profile(path: &Path) -> Result<CityProfile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the city profile {}: {e}", path.display()))?;
    parse_profile(&text).map_err(|e| format!("the city profile {}: {e}", path.display()))
}

/// Parses and checks a profile's TOML text.
pub fn parse_profile(text: &str) -> Result<CityProfile, String> {
    let profile: CityProfile = toml::from_str(text).map_err(|e| e.to_string())?;
    let problems = profile.check();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(profile)
}

/// The profile of the data directory `dir`, or None when it has no `citybrain.toml`.
pub fn load_profile(dir: &Path) -> Result<Option<CityProfile>, String> {
    let path = dir.join(PROFILE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    read_profile(&path).map(Some)
}

/// The profile as a commented TOML file.
pub fn profile_text(p: &CityProfile) -> String {
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|s| toml_string(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    out.push_str(
        "# The city profile: read by every scene, the cockpit and the offline CLI commands.\n",
    );
    out.push_str(
        "# Edit and restart `citybrain up`; `citybrain init --help` explains each setting.\n\n",
    );
    out.push_str(&format!("name = {}\n", toml_string(&p.name)));
    if let Some(zh) = &p.name_zh {
        out.push_str(&format!("name_zh = {}\n", toml_string(zh)));
    }
    out.push_str("# IANA time zone: local days, hours and tariff periods follow it.\n");
    out.push_str(&format!(
        "time_zone = {}\n",
        toml_string(p.time_zone.name())
    ));
    out.push_str("# Plates starting with any of these are local (the census splits by them).\n");
    out.push_str(&format!(
        "plate_prefixes = [{}]\n",
        quoted(&p.plate_prefixes)
    ));
    out.push_str("# The cockpit's languages, the default first.\n");
    out.push_str(&format!("languages = [{}]\n", quoted(&p.languages)));
    if let Some(MapView { centre, bounds }) = &p.map {
        out.push_str("\n[map]\n# Where the map opens: [lon, lat].\n");
        out.push_str(&format!("centre = [{}, {}]\n", centre[0], centre[1]));
        if let Some([w, s, e, n]) = bounds {
            out.push_str("# The city's extent: [west, south, east, north].\n");
            out.push_str(&format!("bounds = [{w}, {s}, {e}, {n}]\n"));
        }
    }
    out
}

/// A TOML basic string (quotes, backslashes and control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_profile_reads_back_the_same() {
        let mut p = CityProfile::hangzhou();
        p.name = "Zheng\"zhou".into();
        p.plate_prefixes = vec!["豫A".into(), "豫Z".into()];
        p.map = Some(MapView {
            centre: [113.62, 34.75],
            bounds: Some([113.3, 34.5, 114.0, 35.0]),
        });
        assert_eq!(parse_profile(&profile_text(&p)).unwrap(), p);
        p.map = None;
        p.name_zh = None;
        assert_eq!(parse_profile(&profile_text(&p)).unwrap(), p);
    }

    #[test]
    fn mistakes_name_their_setting() {
        let e = parse_profile("name = \"X\"\ntime_zone = \"Asia/Zhengzhou\"\n").unwrap_err();
        assert!(e.contains("Asia/Zhengzhou") && e.contains("IANA"), "{e}");
        let e =
            parse_profile("name = \"X\"\ntime_zone = \"UTC\"\nlanguages = [\"fr\"]\n").unwrap_err();
        assert!(e.contains("languages"), "{e}");
        let e =
            parse_profile("name = \"X\"\ntime_zone = \"UTC\"\nplate_prefix = \"A\"\n").unwrap_err();
        assert!(e.contains("plate_prefix"), "{e}");
    }
}
