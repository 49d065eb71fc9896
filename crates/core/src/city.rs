//! The city profile: what makes a deployment this city and not another. Every scene reads
//! it (local days and hours in its zone, local plates by its prefixes), the cockpit centres
//! its map and formats times with it, and the offline CLI commands take the same file.
//! Written by `citybrain init` as `citybrain.toml` in the data directory.

use serde::{Deserialize, Serialize};

use crate::{GeoPoint, TimeZone};

/// A city's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityProfile {
    /// The city's name as shown in English (`Zhengzhou`).
    pub name: String,
    /// Its name in Chinese (`郑州`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    /// IANA zone (`Asia/Shanghai`): local days, hours and tariffs follow it.
    pub time_zone: TimeZone,
    /// Plates starting with any of these are local (`豫A`); the census splits by them.
    #[serde(default)]
    pub plate_prefixes: Vec<String>,
    /// The cockpit's languages, first the default (`zh`, `en`).
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// Where the map opens, before any data is drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapView>,
}

/// The map's opening view.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapView {
    /// `[lon, lat]`.
    pub centre: [f64; 2],
    /// `[west, south, east, north]`, when the city's extent is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 4]>,
}

fn default_languages() -> Vec<String> {
    vec!["zh".into(), "en".into()]
}

/// The cockpit's languages.
pub const LANGUAGES: &[&str] = &["zh", "en"];

/// The demo city's (see [`CityProfile::hangzhou`]).
impl Default for CityProfile {
    fn default() -> Self {
        Self::hangzhou()
    }
}

impl CityProfile {
    /// The demo city's profile, and the one a data directory without `citybrain.toml` has.
    pub fn hangzhou() -> Self {
        Self {
            name: "Hangzhou".into(),
            name_zh: Some("杭州".into()),
            time_zone: TimeZone::parse("Asia/Shanghai").expect("in the tz database"),
            plate_prefixes: vec!["浙A".into()],
            languages: default_languages(),
            map: Some(MapView {
                centre: [120.16, 30.27],
                bounds: None,
            }),
        }
    }

    /// Every problem with the profile, each naming its setting.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push("name: the city needs a name".to_string());
        }
        for p in &self.plate_prefixes {
            if p.trim().is_empty() || p.trim() != p {
                problems.push(format!(
                    "plate_prefixes: '{p}' is blank or has spaces around it (write e.g. \"豫A\")"
                ));
            }
        }
        if self.languages.is_empty() {
            problems.push("languages: give at least one of zh, en".to_string());
        }
        for l in &self.languages {
            if !LANGUAGES.contains(&l.as_str()) {
                problems.push(format!(
                    "languages: '{l}' is not one the cockpit speaks (zh, en)"
                ));
            }
        }
        if let Some(map) = &self.map {
            if let Err(e) = GeoPoint::new(map.centre[0], map.centre[1]) {
                problems.push(format!("map.centre: {e}"));
            }
            if let Some([w, s, e, n]) = map.bounds {
                let valid = GeoPoint::new(w, s).is_ok() && GeoPoint::new(e, n).is_ok();
                if !valid || w >= e || s >= n {
                    problems.push(
                        "map.bounds: give [west, south, east, north] with west < east and south < north"
                            .to_string(),
                    );
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangzhou_is_a_valid_profile_and_problems_name_their_setting() {
        assert!(CityProfile::hangzhou().check().is_empty());
        let mut p = CityProfile::hangzhou();
        p.plate_prefixes = vec![" 豫A".into()];
        p.languages = vec!["fr".into()];
        p.map = Some(MapView {
            centre: [200.0, 30.0],
            bounds: Some([114.0, 35.0, 113.0, 34.0]),
        });
        let problems = p.check();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("plate_prefixes"));
        assert!(problems[1].starts_with("languages"));
        assert!(problems[2].starts_with("map.centre"));
        assert!(problems[3].starts_with("map.bounds"));
    }
}
