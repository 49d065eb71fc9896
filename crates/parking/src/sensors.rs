//! Berth sensor messages in the FIWARE Smart Data Models shapes, so existing sensor gateways
//! publish without glue: `ParkingSpot` (one berth: `status` occupied/free/closed/unknown,
//! `refParkingSite` naming its lot) and `OffStreetParking` (a lot's `availableSpotNumber`).
//! Both the key-value form and the NGSI-LD normalised form (`{"type": "Property", "value":
//! ...}`) are read. A lot's id is the number at the end of its URN
//! (`urn:ngsi-ld:OffStreetParking:12` is lot 12).

use citybrain_core::Timestamp;
use serde_json::Value;

use crate::LotId;

/// One sensor message, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorReading {
    /// A berth: occupied, free, or `None` when closed or unknown (not counted).
    Spot {
        lot: LotId,
        spot: String,
        occupied: Option<bool>,
        ts: Timestamp,
    },
    /// A lot's own count of free berths.
    Lot {
        lot: LotId,
        free: u32,
        ts: Timestamp,
    },
}

impl SensorReading {
    pub fn lot(&self) -> LotId {
        match self {
            Self::Spot { lot, .. } | Self::Lot { lot, .. } => *lot,
        }
    }

    pub fn ts(&self) -> Timestamp {
        match self {
            Self::Spot { ts, .. } | Self::Lot { ts, .. } => *ts,
        }
    }
}

/// Why a message was refused; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SensorError {
    pub field: &'static str,
    pub reason: String,
}

fn error(field: &'static str, reason: impl Into<String>) -> SensorError {
    SensorError {
        field,
        reason: reason.into(),
    }
}

/// A property's value in either form, and its `observedAt` when normalised.
fn property<'a>(entity: &'a Value, name: &str) -> (Option<&'a Value>, Option<&'a str>) {
    match entity.get(name) {
        Some(Value::Object(p)) if p.contains_key("value") || p.contains_key("object") => (
            p.get("value").or_else(|| p.get("object")),
            p.get("observedAt").and_then(Value::as_str),
        ),
        other => (other, None),
    }
}

fn lot_from_urn(field: &'static str, urn: &str) -> Result<LotId, SensorError> {
    urn.rsplit(':')
        .next()
        .and_then(|tail| tail.parse().ok())
        .map(LotId)
        .ok_or_else(|| error(field, format!("'{urn}' does not end in a lot number")))
}

fn timestamp(entity: &Value, observed: Option<&str>) -> Result<Timestamp, SensorError> {
    let text = observed
        .or_else(|| property(entity, "observedAt").0.and_then(Value::as_str))
        .or_else(|| property(entity, "dateObserved").0.and_then(Value::as_str))
        .or_else(|| property(entity, "dateModified").0.and_then(Value::as_str))
        .ok_or_else(|| error("dateObserved", "missing (or observedAt, dateModified)"))?;
    Timestamp::parse(text).map_err(|e| error("dateObserved", e.to_string()))
}

/// Reads one message.
pub fn parse_fiware(message: &[u8]) -> Result<SensorReading, SensorError> {
    let entity: Value =
        serde_json::from_slice(message).map_err(|e| error("message", format!("not JSON: {e}")))?;
    let kind = entity
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| error("type", "missing (ParkingSpot or OffStreetParking)"))?;
    let id = entity
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| error("id", "missing"))?;
    match kind {
        "ParkingSpot" => {
            let (status, observed) = property(&entity, "status");
            let status = status
                .and_then(Value::as_str)
                .ok_or_else(|| error("status", "missing (occupied, free, closed or unknown)"))?;
            let occupied = match status {
                "occupied" => Some(true),
                "free" => Some(false),
                "closed" | "unknown" => None,
                other => {
                    return Err(error(
                        "status",
                        format!("'{other}' is not occupied, free, closed or unknown"),
                    ));
                }
            };
            let site = property(&entity, "refParkingSite")
                .0
                .and_then(Value::as_str)
                .ok_or_else(|| error("refParkingSite", "missing (the lot's URN)"))?;
            Ok(SensorReading::Spot {
                lot: lot_from_urn("refParkingSite", site)?,
                spot: id.to_string(),
                occupied,
                ts: timestamp(&entity, observed)?,
            })
        }
        "OffStreetParking" => {
            let (free, observed) = property(&entity, "availableSpotNumber");
            let free = free
                .and_then(Value::as_u64)
                .ok_or_else(|| error("availableSpotNumber", "missing or not a whole number"))?;
            let free =
                u32::try_from(free).map_err(|_| error("availableSpotNumber", "too large"))?;
            Ok(SensorReading::Lot {
                lot: lot_from_urn("id", id)?,
                free,
                ts: timestamp(&entity, observed)?,
            })
        }
        other => Err(error(
            "type",
            format!("'{other}' is not ParkingSpot or OffStreetParking"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_and_normalised_forms_read_alike() {
        let kv = br#"{"id":"urn:ngsi-ld:ParkingSpot:12:a07","type":"ParkingSpot","status":"occupied",
            "refParkingSite":"urn:ngsi-ld:OffStreetParking:12","dateObserved":"2026-11-22T08:00:00+08:00"}"#;
        let normalised = br#"{"id":"urn:ngsi-ld:ParkingSpot:12:a07","type":"ParkingSpot",
            "status":{"type":"Property","value":"occupied","observedAt":"2026-11-22T00:00:00Z"},
            "refParkingSite":{"type":"Relationship","object":"urn:ngsi-ld:OffStreetParking:12"}}"#;
        let a = parse_fiware(kv).unwrap();
        assert_eq!(a, parse_fiware(normalised).unwrap());
        assert_eq!(a.lot(), LotId(12));
        let lot = br#"{"id":"urn:ngsi-ld:OffStreetParking:3","type":"OffStreetParking",
            "availableSpotNumber":41,"totalSpotNumber":120,"dateObserved":"2026-11-22T08:00:00Z"}"#;
        assert!(matches!(
            parse_fiware(lot).unwrap(),
            SensorReading::Lot {
                lot: LotId(3),
                free: 41,
                ..
            }
        ));
    }

    #[test]
    fn bad_messages_name_the_field() {
        let e = parse_fiware(br#"{"id":"x","type":"ParkingSpot","status":"parked","refParkingSite":"urn:a:1","dateObserved":"2026-11-22T08:00:00Z"}"#).unwrap_err();
        assert_eq!(e.field, "status");
        let e = parse_fiware(br#"{"id":"x","type":"ParkingSpot","status":"free","refParkingSite":"urn:a:b","dateObserved":"2026-11-22T08:00:00Z"}"#).unwrap_err();
        assert_eq!(e.field, "refParkingSite");
        let e = parse_fiware(
            br#"{"id":"x","type":"ParkingSpot","status":"free","refParkingSite":"urn:a:1"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "dateObserved");
        assert_eq!(parse_fiware(b"{").unwrap_err().field, "message");
    }
}
