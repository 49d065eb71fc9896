//! NDJSON: one JSON object a line, read by field name (or a feed mapping's source names)
//! straight into the record check, split at line boundaries and decoded on all cores.

use std::borrow::Cow;
use std::fmt;

use arrow::array::RecordBatch;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::*;

struct RecordSeed<'s, 'de> {
    def: &'s DatasetDef,
    mapper: Option<&'s Mapper<'s>>,
    raws: &'s mut Vec<Option<Raw<'de>>>,
    unknown: &'s mut Vec<String>,
    /// Fields given more than once: refused rather than the last value silently winning.
    repeated: &'s mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match self.mapper {
                None => self
                    .def
                    .fields
                    .iter()
                    .position(|f| f.name == key)
                    .map_or(Slot::Unknown, Slot::Field),
                Some(m) => m.slot(&key),
            };
            match slot {
                Slot::Field(i) => {
                    let value = map.next_value_seed(RawSeed)?;
                    if self.raws[i].is_some() {
                        if !self.repeated.iter().any(|r| *r == *key) {
                            self.repeated.push(key.into_owned());
                        }
                    } else {
                        self.raws[i] = Some(value);
                    }
                }
                Slot::Ignore => {
                    map.next_value::<IgnoredAny>()?;
                }
                Slot::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    self.unknown.push(key.into_owned());
                }
            }
        }
        Ok(())
    }
}

struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed {
    type Value = Raw<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
        Ok(i64::try_from(v).map_or(Raw::Other("an integer too large for 64 bits"), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        let mut numbers = Vec::with_capacity(2);
        let mut only_numbers = true;
        while let Some(item) = seq.next_element_seed(RawSeed)? {
            match item {
                Raw::Int(i) => numbers.push(i as f64),
                Raw::Float(f) => numbers.push(f),
                _ => only_numbers = false,
            }
        }
        Ok(match numbers.as_slice() {
            [lon, lat] if only_numbers => Raw::Point(*lon, *lat),
            _ => Raw::Other("an array"),
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let (mut lon, mut lat, mut extra, mut repeated) = (None, None, false, false);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value = map.next_value_seed(RawSeed)?;
            let number = match value {
                Raw::Int(i) => Some(i as f64),
                Raw::Float(f) => Some(f),
                _ => None,
            };
            match (key.as_ref(), number) {
                ("lon" | "lng" | "longitude", Some(n)) if lon.is_none() => lon = Some(n),
                ("lat" | "latitude", Some(n)) if lat.is_none() => lat = Some(n),
                ("lon" | "lng" | "longitude" | "lat" | "latitude", Some(_)) => repeated = true,
                _ => extra = true,
            }
        }
        Ok(match (lon, lat, extra, repeated) {
            (_, _, _, true) => Raw::Other("an object giving lon or lat more than once"),
            (Some(lon), Some(lat), false, false) => Raw::Point(lon, lat),
            _ => Raw::Other("an object"),
        })
    }
}

/// Decodes a chunk of NDJSON whose first line is `first_line`.
fn decode_ndjson_chunk(
    def: &DatasetDef,
    mapper: Option<&Mapper>,
    chunk: &[u8],
    first_line: u64,
) -> Decoded {
    let n_fields = def.fields.len();
    // No more rows than lines: a guess from the size alone could reserve far more than the
    // records need when lines are long and the dataset wide.
    let lines = chunk.iter().filter(|b| **b == b'\n').count() + 1;
    let estimate = (chunk.len() / 64 + 1).min(lines);
    let mut columns = Columns::new(def, estimate);
    let mut rejected = Vec::new();
    let mut raws: Vec<Option<Raw>> = Vec::with_capacity(n_fields);
    let mut unknown = Vec::new();
    let mut repeated = Vec::new();
    let mut problems = Vec::new();
    let mut failed = vec![false; n_fields];
    for (offset, line) in chunk.split(|b| *b == b'\n').enumerate() {
        let line_no = first_line + offset as u64;
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        if is_blank(trimmed) {
            continue;
        }
        raws.clear();
        raws.resize_with(n_fields, || None);
        unknown.clear();
        repeated.clear();
        problems.clear();
        let mut de = serde_json::Deserializer::from_slice(trimmed);
        let parsed = RecordSeed {
            def,
            mapper,
            raws: &mut raws,
            unknown: &mut unknown,
            repeated: &mut repeated,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if let Err(error) = parsed {
            rejected.push(Rejected {
                line: line_no,
                problems: vec![Problem {
                    line: line_no,
                    field: None,
                    reason: format!("not a JSON object: {error}"),
                }],
                raw: cut(trimmed),
            });
            continue;
        }
        for name in unknown.drain(..) {
            problems.push(Problem {
                line: line_no,
                field: Some(name),
                reason: "the dataset has no such field".to_string(),
            });
        }
        for name in repeated.drain(..) {
            problems.push(Problem {
                line: line_no,
                field: Some(name),
                reason: "the field is given more than once in the record".to_string(),
            });
        }
        let mut row = [Value::Missing; 32];
        let mut row_heap;
        let row: &mut [Value] = if n_fields <= row.len() {
            &mut row[..n_fields]
        } else {
            row_heap = vec![Value::Missing; n_fields];
            &mut row_heap
        };
        match mapper {
            None => check_row(def, &raws, false, line_no, row, &mut problems, None),
            Some(m) => {
                failed.fill(false);
                m.apply(&mut raws, line_no, &mut problems, &mut failed);
                let before = problems.len();
                // Leniently, as a CSV cell: a feed's "12" is an integer.
                check_row(def, &raws, true, line_no, row, &mut problems, Some(&failed));
                name_sources(m, def, &mut problems[before..]);
            }
        }
        if problems.is_empty() {
            columns.push(row);
        } else {
            rejected.push(Rejected {
                line: line_no,
                problems: std::mem::take(&mut problems),
                raw: cut(trimmed),
            });
        }
    }
    Decoded {
        batch: columns.finish(),
        rejected,
    }
}

/// Bodies below this size are decoded on one thread: splitting costs more than it saves.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Decodes NDJSON on all available cores, without bounds.
pub fn decode_ndjson(def: &DatasetDef, body: &[u8]) -> Decoded {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    decode_ndjson_unchecked(def, None, body)
}

/// Decodes NDJSON within `limits` (refused whole when over).
pub fn decode_ndjson_within(
    def: &DatasetDef,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    ndjson_within(def, None, body, limits)
}

pub(super) fn ndjson_within(
    def: &DatasetDef,
    mapper: Option<&Mapper>,
    body: &[u8],
    limits: &IngestLimits,
) -> Result<Decoded, DecodeError> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    check_text_rows(def, body, limits, || {
        body.split(|b| *b == b'\n')
            .filter(|line| !is_blank(line))
            .count() as u64
    })?;
    Ok(decode_ndjson_unchecked(def, mapper, body))
}

fn decode_ndjson_unchecked(def: &DatasetDef, mapper: Option<&Mapper>, body: &[u8]) -> Decoded {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || body.len() < PARALLEL_MIN_BYTES {
        return decode_ndjson_chunk(def, mapper, body, 1);
    }
    // Split at newlines into one chunk per core, remembering each chunk's first line number.
    let mut chunks = Vec::with_capacity(threads);
    let mut start = 0;
    let mut first_line = 1u64;
    for k in 1..=threads {
        let mut end = if k == threads {
            body.len()
        } else {
            (body.len() * k / threads).max(start)
        };
        while end < body.len() && body[end] != b'\n' {
            end += 1;
        }
        let end = (end + 1).min(body.len());
        let chunk = &body[start..end];
        chunks.push((chunk, first_line));
        first_line += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        start = end;
    }
    let parts: Vec<Decoded> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|(chunk, line)| {
                scope.spawn(move || decode_ndjson_chunk(def, mapper, chunk, *line))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("decoder thread panicked"))
            .collect()
    });
    concat(def, parts)
}

fn concat(def: &DatasetDef, parts: Vec<Decoded>) -> Decoded {
    let schema = data_schema(def);
    let batches: Vec<RecordBatch> = parts.iter().map(|p| p.batch.clone()).collect();
    let batch = arrow::compute::concat_batches(&schema, &batches)
        .expect("parts share the dataset's schema");
    let rejected = parts.into_iter().flat_map(|p| p.rejected).collect();
    Decoded { batch, rejected }
}
