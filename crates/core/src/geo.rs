//! Geographic points in WGS-84 degrees.

use serde::{Deserialize, Serialize};

/// A point on the earth, longitude then latitude (the GeoJSON order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lon: f64,
    pub lat: f64,
}

impl GeoPoint {
    /// Refuses coordinates outside the valid range, and NaN.
    pub fn new(lon: f64, lat: f64) -> Result<Self, &'static str> {
        if !(-180.0..=180.0).contains(&lon) {
            return Err("longitude must be within -180..180");
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err("latitude must be within -90..90");
        }
        Ok(Self { lon, lat })
    }

    /// Parses `POINT(lon lat)` (WKT) or `lon,lat`, the forms a CSV cell can carry.
    pub fn parse_text(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        let inner = if let Some(rest) = text
            .strip_prefix("POINT")
            .or_else(|| text.strip_prefix("point"))
        {
            rest.trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or("expected POINT(lon lat)")?
        } else {
            text
        };
        let mut parts = inner
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty());
        let (Some(lon), Some(lat), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected a point as 'lon,lat' or 'POINT(lon lat)'");
        };
        let lon = lon.parse().map_err(|_| "longitude is not a number")?;
        let lat = lat.parse().map_err(|_| "latitude is not a number")?;
        Self::new(lon, lat)
    }

    /// Great-circle distance in metres (haversine; good to ~0.5% at city scale).
    pub fn distance_m(&self, other: &GeoPoint) -> f64 {
        const EARTH_RADIUS_M: f64 = 6_371_008.8;
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let p = GeoPoint::parse_text("POINT(120.16 30.25)").unwrap();
        assert_eq!((p.lon, p.lat), (120.16, 30.25));
        assert_eq!(GeoPoint::parse_text("120.16,30.25").unwrap(), p);
        assert!(GeoPoint::parse_text("200,30").is_err());
        assert!(GeoPoint::parse_text("abc").is_err());
    }

    #[test]
    fn distance() {
        let a = GeoPoint::new(120.15, 30.24).unwrap();
        let b = GeoPoint::new(120.16, 30.24).unwrap();
        let d = a.distance_m(&b);
        assert!((d - 961.0).abs() < 5.0, "{d}");
    }
}
