//! Reading the worked hex examples of a spec (the client protocol's and the peer
//! messages'): a block following `<!-- example: NAME -->`, fenced as `hex`, whose lines
//! hold hex bytes with an optional `| annotation`. Shared by `protocol/tests/wire_doc.rs`
//! and the node's `tests/peer_doc.rs` (which includes this file by path), so both specs
//! are checked by one reader.

/// `bytes` as lines of 16 space-separated hex pairs (what a doc example shows).
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The bytes of example `name` in `doc`, or `None` when it is missing or malformed.
pub fn doc_example(doc: &str, name: &str) -> Option<Vec<u8>> {
    let marker = format!("<!-- example: {name} -->");
    let start = doc.find(&marker)? + marker.len();
    let rest = doc.get(start..)?;
    let open = rest.find("```hex")? + "```hex".len();
    let close = open + rest.get(open..)?.find("```")?;
    let mut out = Vec::new();
    for line in rest.get(open..close)?.lines() {
        // Anything after `|` on a line is an annotation.
        let data = line.split('|').next().unwrap_or("");
        for tok in data.split_whitespace() {
            out.push(u8::from_str_radix(tok, 16).ok()?);
        }
    }
    Some(out)
}
