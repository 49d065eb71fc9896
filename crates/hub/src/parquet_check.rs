//! A Parquet body's structure checked before the parquet crate decodes it. The crate trusts
//! some of what a file states and asserts (panics) when it is false; a body from outside is
//! refused here instead, naming the row group and column. Every check was found by fuzzing.

use parquet::basic::Encoding;
use parquet::column::page::Page;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::decode::DecodeError;

fn refuse(group: usize, column: &str, what: &str) -> DecodeError {
    DecodeError::Parquet(format!("row group {}, column {column}: {what}", group + 1))
}

/// The column chunks' offsets and sizes the footer states, checked against the file before
/// any page is read: the parquet crate asserts on negative ones.
pub(crate) fn check_chunks(meta: &ParquetMetaData, len: usize) -> Result<(), DecodeError> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        for column in group.columns() {
            let data = column.data_page_offset();
            let start = column.dictionary_page_offset().unwrap_or(data);
            let size = column.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(size).ok())
                .map(|(s, n)| s.saturating_add(n));
            if data < 0 || end.is_none_or(|e| e > len as u64) {
                return Err(refuse(
                    g,
                    &column.column_path().string(),
                    &format!(
                        "its pages lie outside the file (offset {start}, {size} bytes, in a file of {len})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every data page checked against what the crate's decoder asserts on: the repetition
/// and definition levels against the bytes that hold them, and a dictionary-encoded page
/// against a dictionary page before it in its column chunk. The crate's decoder of a
/// nullable flat column's levels (its "packed" null mask) reads a bit-packed run as long as
/// the run's header says, past the page's end; a deprecated `BIT_PACKED` level block
/// longer than its page is sliced without a check; a dictionary-encoded page with no
/// dictionary expects one to have been set: all three assert. Each page is decompressed
/// once more.
pub fn check_levels(body: &bytes::Bytes) -> Result<(), DecodeError> {
    let reader =
        SerializedFileReader::new(body.clone()).map_err(|e| DecodeError::Parquet(e.to_string()))?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    for g in 0..meta.num_row_groups() {
        let group = reader
            .get_row_group(g)
            .map_err(|e| DecodeError::Parquet(e.to_string()))?;
        for c in 0..schema.num_columns() {
            let descr = schema.column(c);
            let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
            // What the crate decodes with its packed null mask (`packed_null_mask`).
            let packed = max_def == 1 && max_rep == 0 && descr.self_type().is_optional();
            let name = descr.path().string();
            let pages = group
                .get_column_page_reader(c)
                .map_err(|e| DecodeError::Parquet(e.to_string()))?;
            let mut dictionary = false;
            for page in pages {
                // A page the crate cannot read is its own clean error, met again when decoded.
                let Ok(page) = page else { break };
                if let Page::DictionaryPage { .. } = page {
                    dictionary = true;
                    continue;
                }
                if !dictionary
                    && matches!(
                        page.encoding(),
                        Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY
                    )
                {
                    return Err(refuse(
                        g,
                        &name,
                        "a dictionary-encoded page with no dictionary page before it",
                    ));
                }
                check_page(&page, max_def, max_rep, packed)
                    .map_err(|what| refuse(g, &name, &what))?;
            }
        }
    }
    Ok(())
}

fn check_page(page: &Page, max_def: i16, max_rep: i16, packed: bool) -> Result<(), String> {
    match page {
        Page::DataPage {
            buf,
            num_values,
            def_level_encoding,
            rep_level_encoding,
            ..
        } => {
            let levels = *num_values as usize;
            let mut at = 0usize;
            for (max, encoding, is_def) in [
                (max_rep, *rep_level_encoding, false),
                (max_def, *def_level_encoding, true),
            ] {
                if max == 0 {
                    continue;
                }
                let rest = buf.get(at..).unwrap_or_default();
                let data = match encoding {
                    Encoding::RLE => {
                        // A length the page cannot hold is the crate's own clean error.
                        let Some(len) = rest.get(..4) else {
                            return Ok(());
                        };
                        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
                        let Some(data) = rest.get(4..4usize.saturating_add(len)) else {
                            return Ok(());
                        };
                        at += 4 + len;
                        data
                    }
                    #[allow(deprecated)]
                    Encoding::BIT_PACKED => {
                        let width = bit_width(max);
                        let need = levels.saturating_mul(width).div_ceil(8);
                        if need > rest.len() {
                            return Err(format!(
                                "a page's {} levels need {need} bytes, it holds {}",
                                levels,
                                rest.len()
                            ));
                        }
                        at += need;
                        continue;
                    }
                    _ => return Ok(()),
                };
                if is_def && packed {
                    check_packed_run(data, levels)?;
                }
            }
            Ok(())
        }
        Page::DataPageV2 {
            buf,
            num_values,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } if packed => {
            let start = *rep_levels_byte_len as usize;
            let end = start.saturating_add(*def_levels_byte_len as usize);
            match buf.get(start..end) {
                Some(data) => check_packed_run(data, *num_values as usize),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The footer's metadata and every page header, walked as Thrift's compact protocol before
/// the crate reads them. The crate skips a field it does not know element by element, and a
/// list of booleans takes it no bytes per element: a few bytes declaring 2³¹ of them kept
/// it busy for seconds (a 667-byte body, 3.3 s; found by fuzzing), and a footer can hold
/// hundreds of such lists. It also reserves room for as many row groups as a list declares.
/// Here every list, set and map must declare no more elements than there are bytes left,
/// and all of them together no more than the bytes walked: which every honest writer's
/// metadata meets, since each element takes at least a byte on the wire.
pub(crate) fn check_metadata(body: &[u8]) -> Result<(), DecodeError> {
    let refuse = |what: String| DecodeError::Parquet(format!("the footer's metadata: {what}"));
    let Some(len) = body.len().checked_sub(8) else {
        return Ok(()); // not Parquet: the crate's own clean error
    };
    if &body[len + 4..] != b"PAR1" {
        return Ok(());
    }
    let stated = u32::from_le_bytes(body[len..len + 4].try_into().unwrap_or_default()) as usize;
    let Some(start) = len.checked_sub(stated) else {
        return Ok(());
    };
    let mut walk = Walk::new(&body[start..len]);
    match walk.structure() {
        Err(what) if walk.malicious => Err(refuse(what)),
        // Anything else wrong with it is the crate's own clean error.
        _ => Ok(()),
    }
}

/// Every page header of every column chunk the (checked) footer points at, walked as in
/// [`check_metadata`]; a header that cannot be walked to its end stops the walk of its chunk
/// (the crate meets it and fails cleanly).
pub(crate) fn check_page_headers(meta: &ParquetMetaData, body: &[u8]) -> Result<(), DecodeError> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        for column in group.columns() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let (Ok(start), Ok(size)) = (
                usize::try_from(start),
                usize::try_from(column.compressed_size()),
            ) else {
                continue; // check_chunks refuses these
            };
            let Some(chunk) = body.get(start..start.saturating_add(size)) else {
                continue;
            };
            let mut at = 0;
            while at < chunk.len() {
                let mut walk = Walk::new(&chunk[at..]);
                match walk.structure() {
                    Ok(()) => {}
                    Err(what) if walk.malicious => {
                        return Err(refuse(
                            g,
                            &column.column_path().string(),
                            &format!("a page header: {what}"),
                        ));
                    }
                    Err(_) => break,
                }
                // Field 3 of a page header: its compressed size.
                let Some(page) = walk.field3.and_then(|n| usize::try_from(n).ok()) else {
                    break;
                };
                at = at.saturating_add(walk.at).saturating_add(page);
            }
        }
    }
    Ok(())
}

/// A walk over a Thrift compact-protocol struct, counting the elements it declares.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    elements: usize,
    /// The top-level struct's field 3 as an i32 (a page header's compressed size).
    field3: Option<i64>,
    /// The walk failed on an element count (rather than on bytes that ran out).
    malicious: bool,
}

impl<'a> Walk<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            elements: 0,
            field3: None,
            malicious: false,
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("cut short")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err("cut short".into());
        }
        self.at += n as usize;
        Ok(())
    }

    /// `n` more elements declared: no more than the bytes left, nor in all than walked.
    fn declare(&mut self, n: u64) -> Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        self.elements = self.elements.saturating_add(n as usize);
        if n > left || self.elements > self.bytes.len() {
            self.malicious = true;
            return Err(format!(
                "a list declares {n} elements with {left} bytes left"
            ));
        }
        Ok(())
    }

    fn structure(&mut self) -> Result<(), String> {
        self.fields(0, true)
    }

    fn fields(&mut self, depth: u32, top: bool) -> Result<(), String> {
        let mut id: i64 = 0;
        loop {
            let header = self.byte()?;
            let kind = header & 0x0f;
            if kind == 0 {
                return Ok(());
            }
            let delta = i64::from(header >> 4);
            id = if delta == 0 {
                let z = self.varint()?;
                ((z >> 1) as i64) ^ -((z & 1) as i64)
            } else {
                id + delta
            };
            if top && id == 3 && kind == 5 {
                let z = self.varint()?;
                self.field3 = Some(((z >> 1) as i64) ^ -((z & 1) as i64));
                continue;
            }
            self.value(kind, depth + 1)?;
        }
    }

    /// One value of compact type `kind`, as the crate skips it (a boolean takes no bytes).
    fn value(&mut self, kind: u8, depth: u32) -> Result<(), String> {
        if depth > 64 {
            return Err("nested deeper than 64".into());
        }
        match kind {
            1 | 2 => Ok(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let header = self.byte()?;
                if header == 0 {
                    return Ok(());
                }
                let n = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.declare(n)?;
                let element = header & 0x0f;
                for _ in 0..n {
                    self.value(element, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.declare(n)?;
                for _ in 0..n {
                    self.value(kv >> 4, depth + 1)?;
                    self.value(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.fields(depth, false),
            13 => self.skip(16),
            other => Err(format!("unknown type {other}")),
        }
    }
}

fn bit_width(max: i16) -> usize {
    (u16::BITS - (max.max(0) as u16).leading_zeros()) as usize
}

/// Walks a one-bit RLE/bit-packed hybrid run list as the crate's packed decoder does, for as
/// many levels as the page has, and refuses a bit-packed run that needs bytes the data lacks
/// or a length that overflows.
fn check_packed_run(data: &[u8], levels: usize) -> Result<(), String> {
    let mut at = 0usize;
    let mut left = levels;
    while left > 0 && at < data.len() {
        // The header as the crate reads it: a little-endian base-128 integer, at most 10 bytes.
        let mut header: i64 = 0;
        let mut i = 0;
        loop {
            let Some(&byte) = data.get(at + i) else {
                return Ok(()); // cut short: the crate's own clean error
            };
            header |= ((byte & 0x7f) as i64) << (i * 7);
            i += 1;
            if byte & 0x80 == 0 || i == 10 {
                break;
            }
        }
        at += i;
        let count = (header >> 1) as usize;
        if header & 1 == 1 {
            let Some(bits) = count.checked_mul(8) else {
                return Err(format!(
                    "a bit-packed run of {count} groups in the definition levels"
                ));
            };
            let take = bits.min(left);
            let have = data.len() - at;
            if take.div_ceil(8) > have {
                return Err(format!(
                    "a bit-packed run of the definition levels needs {} bytes, {have} follow",
                    take.div_ceil(8)
                ));
            }
            left -= take;
            at = at.saturating_add(count);
        } else {
            if at >= data.len() {
                return Ok(()); // no value byte: the crate's own clean error
            }
            at += 1;
            left -= count.min(left);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thrift_walks_count_what_lists_declare() {
        // A struct: field 1 i32 = 3, field 3 i32 = 100 (zigzag 200), stop.
        let mut w = Walk::new(&[0x15, 0x06, 0x25, 0xc8, 0x01, 0x00]);
        assert!(w.structure().is_ok());
        assert_eq!((w.field3, w.at), (Some(100), 6));
        // A list of three booleans (taking no bytes, as the crate reads them), then stop.
        let mut w = Walk::new(&[0x19, 0x31, 0x00, 0x00, 0x00]);
        assert!(w.structure().is_ok());
        // A list declaring 2^31 - 1 booleans in a few bytes: refused, not walked.
        let mut w = Walk::new(&[0x19, 0xf1, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00]);
        assert!(w.structure().is_err() && w.malicious);
        // A map of booleans to booleans, 300 entries declared in 4 bytes.
        let mut w = Walk::new(&[0x1b, 0xac, 0x02, 0x11, 0x00]);
        assert!(w.structure().is_err() && w.malicious);
        // Bytes that run out are not malicious: the crate's own error.
        let mut w = Walk::new(&[0x18, 0x05, b'a']);
        assert!(w.structure().is_err() && !w.malicious);
    }

    #[test]
    fn packed_runs_are_walked_as_the_decoder_reads_them() {
        // An RLE run of 10 ones, then a bit-packed group of 8.
        assert!(check_packed_run(&[20, 1, 3, 0xff], 18).is_ok());
        // The same group claimed as 2 groups: fine while the levels needed are there.
        assert!(check_packed_run(&[20, 1, 5, 0xff], 18).is_ok());
        // ... and refused when the levels reach past the data.
        assert!(check_packed_run(&[20, 1, 5, 0xff], 26).is_err());
        // A length whose bits overflow.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(check_packed_run(&huge, 1).is_err());
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(3), 2);
        assert_eq!(bit_width(4), 3);
    }
}
