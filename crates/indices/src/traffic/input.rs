//! What goes in: the link table, passages (camera reads) from Arrow batches, and the
//! compact [`Record`] the operators keep of each, local plates told by their packed key.

use crate::plate::PlateKey;

/// A road link between two adjacent checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub link_id: i64,
    pub from: i64,
    pub to: i64,
    pub length_m: f64,
    pub freeflow_s: f64,
    pub district: String,
}

/// Reads a link table from an Arrow batch (columns by name, as in `transport.links`).
pub fn links_from_batch(batch: &arrow::array::RecordBatch) -> Result<Vec<Link>, String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let column = |name: &str, t: &DataType| {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| format!("the link table has no {name} column"))?;
        arrow::compute::cast(c, t).map_err(|e| format!("{name}: {e}"))
    };
    let ids = column("link_id", &DataType::Int64)?;
    let from = column("from_checkpoint", &DataType::Int64)?;
    let to = column("to_checkpoint", &DataType::Int64)?;
    let length = column("length_m", &DataType::Float64)?;
    let freeflow = column("freeflow_s", &DataType::Float64)?;
    // Optional: a link without a district counts in the city's rows only.
    let district = match batch.column_by_name("district") {
        Some(c) => {
            Some(arrow::compute::cast(c, &DataType::Utf8).map_err(|e| format!("district: {e}"))?)
        }
        None => None,
    };
    let (ids, from, to) = (
        ids.as_primitive::<Int64Type>(),
        from.as_primitive::<Int64Type>(),
        to.as_primitive::<Int64Type>(),
    );
    let (length, freeflow) = (
        length.as_primitive::<Float64Type>(),
        freeflow.as_primitive::<Float64Type>(),
    );
    let district = district.as_ref().map(|d| d.as_string::<i32>());
    Ok((0..batch.num_rows())
        .map(|i| Link {
            link_id: ids.value(i),
            from: from.value(i),
            to: to.value(i),
            length_m: length.value(i),
            freeflow_s: freeflow.value(i),
            district: match district {
                Some(d) if d.is_valid(i) && !d.value(i).trim().is_empty() => d.value(i).to_string(),
                _ => crate::CITY.to_string(),
            },
        })
        .collect())
}

/// One camera read.
#[derive(Debug, Clone, Copy)]
pub struct Passage<'a> {
    /// Microseconds since the epoch, UTC.
    pub ts: i64,
    pub checkpoint: i64,
    pub plate: &'a str,
}

/// Calls `f` with each passage of an Arrow batch (columns `ts`, `checkpoint_id`, `plate`, by
/// name, cast as needed); rows missing one of them are skipped.
pub fn for_each_passage(
    batch: &arrow::array::RecordBatch,
    mut f: impl FnMut(Passage<'_>),
) -> Result<(), String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("the passages have no {name} column"))
    };
    let cast = |a: &arrow::array::ArrayRef, t: &DataType| {
        arrow::compute::cast(a, t).map_err(|e| e.to_string())
    };
    let ts = cast(
        column("ts")?,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    let checkpoint = cast(column("checkpoint_id")?, &DataType::Int64)?;
    let checkpoint = checkpoint.as_primitive::<Int64Type>();
    let plate = cast(column("plate")?, &DataType::Utf8)?;
    let plate = plate.as_string::<i32>();
    for i in 0..batch.num_rows() {
        if ts.is_null(i) || checkpoint.is_null(i) || plate.is_null(i) {
            continue;
        }
        f(Passage {
            ts: ts.value(i),
            checkpoint: checkpoint.value(i),
            plate: plate.value(i),
        });
    }
    Ok(())
}

/// A passage as the operators keep it: the plate packed into a fixed-size key and whether it
/// is local, worked out once (a parallel pass does it while routing).
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Microseconds since the epoch, UTC.
    pub ts: i64,
    pub checkpoint: i64,
    pub plate: PlateKey,
    pub local: bool,
}

impl Record {
    pub fn new(passage: Passage<'_>, local: &LocalPrefix) -> Self {
        let plate = PlateKey::new(passage.plate);
        Self {
            ts: passage.ts,
            checkpoint: passage.checkpoint,
            plate,
            local: local.is_local(passage.plate, plate),
        }
    }
}

/// Tells local plates (`TrafficConfig::local_prefixes`) by their packed key: each prefix's
/// bytes under a mask, an AND and a compare per prefix instead of a string comparison. A
/// city can have several (Chongqing's 渝A to 渝H, a prefecture's own letters).
#[derive(Debug, Clone)]
pub struct LocalPrefix {
    prefixes: Vec<Prefix>,
}

#[derive(Debug, Clone)]
struct Prefix {
    text: String,
    bits: u128,
    mask: u128,
}

impl LocalPrefix {
    /// Local plates start with any of `prefixes`; none makes every plate non-local.
    pub fn new<S: AsRef<str>>(prefixes: &[S]) -> Self {
        let prefixes = prefixes
            .iter()
            .map(|p| {
                let text = p.as_ref();
                let len = text.len().min(15);
                let mask = (1u128 << (8 * len)) - 1;
                Prefix {
                    text: text.to_string(),
                    bits: PlateKey::new(text).0 & mask,
                    mask,
                }
            })
            .collect();
        Self { prefixes }
    }

    /// Whether `plate` (packed as `key`) starts with one of the prefixes.
    #[inline]
    pub fn is_local(&self, plate: &str, key: PlateKey) -> bool {
        self.prefixes.iter().any(|p| {
            if plate.len() <= 15 && p.text.len() <= 15 {
                // Packed plates keep their bytes verbatim; longer ones are hashed.
                plate.len() >= p.text.len() && key.0 & p.mask == p.bits
            } else {
                plate.starts_with(&p.text)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalPrefix, PlateKey};

    #[test]
    fn local_plates_are_told_by_their_packed_prefix() {
        let local = LocalPrefix::new(&["浙A"]);
        let is_local = |plate: &str| local.is_local(plate, PlateKey::new(plate));
        assert!(is_local("浙A12345"));
        assert!(is_local("浙AD12345"));
        assert!(is_local("浙A"));
        assert!(!is_local("浙B12345"));
        assert!(!is_local("沪A12345"));
        assert!(!is_local("浙"));
        assert!(!is_local(""));
        assert!(is_local("浙A and far more than fifteen bytes"));
        assert!(!is_local("沪A and far more than fifteen bytes"));
        let everyone = LocalPrefix::new(&[""]);
        assert!(everyone.is_local("沪A12345", PlateKey::new("沪A12345")));
        let long = LocalPrefix::new(&["a prefix of over fifteen bytes"]);
        let plate = "a prefix of over fifteen bytes 1";
        assert!(long.is_local(plate, PlateKey::new(plate)));
        assert!(!long.is_local("a prefix", PlateKey::new("a prefix")));
        let chongqing = LocalPrefix::new(&["渝A", "渝B", "渝G"]);
        let is_local = |plate: &str| chongqing.is_local(plate, PlateKey::new(plate));
        assert!(is_local("渝A12345") && is_local("渝G12345"));
        assert!(!is_local("渝C12345"));
        let nobody = LocalPrefix::new::<&str>(&[]);
        assert!(!nobody.is_local("渝A12345", PlateKey::new("渝A12345")));
    }
}
