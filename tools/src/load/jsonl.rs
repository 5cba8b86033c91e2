//! The JSON lines format: one JSON object per line (blank lines are skipped and not
//! numbered). `--key` names the key field; every other field is a column:
//!
//! | JSON value | written as |
//! | --- | --- |
//! | string | its text, unescaped (UTF-8) |
//! | number, `true`, `false` | the JSON text exactly as written in the input (`1.50` stays `1.50`) |
//! | `null` | nothing: the column is not written (a missing value) |
//! | object, array | its JSON text exactly as written in the input (a nested document stays one value) |
//!
//! The key field may be a string or a number (its text); `null`, an object or an array
//! as the key rejects the row. A line that is not a JSON object, names a field twice,
//! has an empty field name, or has no column besides the key is rejected (`malformed`).

use std::io::{BufRead, BufReader, Read};

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::load::item::{Columns, Item, LoadRow, Refusal, Reject, RejectKind};
use crate::load::parse::{ParseError, ParseOptions, RecordParser};

/// Longest line kept whole in a rejects record (longer ones are cut, the reason says so).
const MAX_REJECT_RECORD_BYTES: usize = 64 * 1024;

/// The JSON lines parser.
pub struct JsonLinesParser {
    reader: BufReader<Box<dyn Read + Send>>,
    line: Vec<u8>,
    line_number: u64,
    number: u64,
    options: ParseOptions,
}

impl JsonLinesParser {
    /// A parser over `reader`.
    pub fn new(options: &ParseOptions, reader: Box<dyn Read + Send>) -> Self {
        JsonLinesParser {
            reader: BufReader::with_capacity(256 * 1024, reader),
            line: Vec::new(),
            line_number: 0,
            number: 0,
            options: options.clone(),
        }
    }
}

/// The fields of one object in input order, values as raw JSON text.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A raw JSON value as the bytes to store; `Ok(None)` for `null`.
fn value_bytes(raw: &RawValue) -> Result<Option<Bytes>, String> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            // Without escapes the string is the text between the quotes.
            if !text.contains('\\') {
                let inner = text
                    .get(1..text.len().saturating_sub(1))
                    .ok_or_else(|| "bad string".to_owned())?;
                return Ok(Some(Bytes::copy_from_slice(inner.as_bytes())));
            }
            let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            Ok(Some(Bytes::from(s)))
        }
        Some(b'n') => Ok(None),
        _ => Ok(Some(Bytes::copy_from_slice(text.as_bytes()))),
    }
}

impl JsonLinesParser {
    fn parse_line(&self, text: &[u8]) -> Result<(Bytes, Columns), Refusal> {
        let malformed = |r: String| (RejectKind::Malformed, r);
        let fields: Fields<'_> =
            serde_json::from_slice(text).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
        let mut key = None;
        let mut columns = Vec::with_capacity(fields.0.len());
        let mut names = std::collections::HashSet::with_capacity(fields.0.len());
        for (name, raw) in fields.0 {
            if !names.insert(name.clone()) {
                return Err(malformed(format!("field {name:?} given twice")));
            }
            if name == self.options.key {
                let first = raw.get().as_bytes().first().copied();
                if matches!(first, Some(b'{' | b'[' | b'n' | b't' | b'f')) {
                    return Err(malformed(format!(
                        "key field {name:?} is {}, not a string or a number",
                        raw.get()
                    )));
                }
                key = value_bytes(raw).map_err(malformed)?;
                continue;
            }
            if name.is_empty() {
                return Err(malformed("empty field name".into()));
            }
            if let Some(v) = value_bytes(raw).map_err(malformed)? {
                columns.push((Bytes::from(name), v));
            }
        }
        let key = key.ok_or_else(|| malformed(format!("no key field {:?}", self.options.key)))?;
        self.options.limits.check(&key, &columns)?;
        Ok((key, columns))
    }
}

impl RecordParser for JsonLinesParser {
    fn next_item(&mut self) -> Result<Option<Item>, ParseError> {
        loop {
            self.line.clear();
            if self.reader.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(None);
            }
            self.line_number += 1;
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            self.number += 1;
            let (number, line) = (self.number, self.line_number);
            return Ok(Some(match self.parse_line(text) {
                Ok((key, columns)) => Item::Row(LoadRow {
                    number,
                    line,
                    key,
                    columns,
                }),
                Err((kind, mut reason)) => {
                    let shown = text.get(..MAX_REJECT_RECORD_BYTES).unwrap_or(text);
                    if shown.len() < text.len() {
                        reason.push_str(&format!(
                            " (record cut to its first {MAX_REJECT_RECORD_BYTES} bytes of {})",
                            text.len()
                        ));
                    }
                    Item::Reject(Reject {
                        number,
                        line,
                        kind,
                        reason,
                        record: String::from_utf8_lossy(shown).into_owned(),
                    })
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::item::RowLimits;
    use crate::load::parse::Format;

    fn items(text: &str) -> Vec<Item> {
        let options = ParseOptions {
            format: Format::JsonLines,
            key: "id".into(),
            delimiter: b',',
            header: true,
            keep_empty: false,
            limits: RowLimits {
                max_value_bytes: 16,
                table_len: 1,
            },
        };
        crate::load::parse::tests::items(&options, text)
    }

    #[test]
    fn jsonl_values_keep_their_json_text() {
        let got = items(
            "{\"id\": 7, \"s\": \"a\\\"b\", \"n\": 1.50, \"b\": true, \"z\": null, \"o\": {\"x\": [1, 2]}}\n",
        );
        let Item::Row(r) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(r.key.as_ref(), b"7");
        let cols: Vec<(&[u8], &[u8])> = r
            .columns
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            cols,
            vec![
                (&b"s"[..], &b"a\"b"[..]),
                (b"n", b"1.50"),
                (b"b", b"true"),
                (b"o", b"{\"x\": [1, 2]}"),
            ]
        );
    }

    #[test]
    fn jsonl_rejects_bad_lines_and_skips_blank_ones() {
        let got = items(
            "{\"id\":\"a\",\"v\":\"1\"}\n\n[1,2]\n{\"id\":\"b\",\"v\":\"1\",\"v\":\"2\"}\n{\"v\":\"x\"}\n{\"id\":null,\"v\":\"x\"}\n{\"id\":\"c\",\"v\":\"0123456789abcdefXX\"}\n{\"id\":\"d\"\n",
        );
        let kinds: Vec<(u64, u64, Option<RejectKind>)> = got
            .iter()
            .map(|i| match i {
                Item::Row(r) => (r.number, r.line, None),
                Item::Reject(r) => (r.number, r.line, Some(r.kind)),
            })
            .collect();
        use RejectKind::*;
        assert_eq!(
            kinds,
            vec![
                (1, 1, None),
                (2, 3, Some(Malformed)),
                (3, 4, Some(Malformed)),
                (4, 5, Some(Malformed)),
                (5, 6, Some(Malformed)),
                (6, 7, Some(Oversize)),
                (7, 8, Some(Malformed)),
            ]
        );
        let Item::Reject(dup) = &got[2] else { panic!() };
        assert!(dup.reason.contains("given twice"), "{dup:?}");
        let Item::Reject(trunc) = &got[6] else {
            panic!()
        };
        assert!(trunc.reason.starts_with("invalid JSON"), "{trunc:?}");
        assert_eq!(trunc.record, "{\"id\":\"d\"");
    }
}
