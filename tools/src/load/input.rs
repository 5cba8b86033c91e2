//! Opening the input: a file or standard input (`-`), gzip detected by its magic bytes
//! (`1f 8b`, RFC 1952) whatever the file is called, concatenated gzip members read as one
//! stream (as `zcat` does). The bytes taken from the file (compressed ones for gzip) are
//! counted in a shared counter, so progress against the file size works for both.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

/// The first two bytes of every gzip member (RFC 1952 section 2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Read buffer of the raw input and of the decompressed stream.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Where rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
}

impl InputSource {
    /// `-` for standard input, else a path.
    pub fn from_arg(arg: &str) -> InputSource {
        if arg == "-" {
            InputSource::Stdin
        } else {
            InputSource::File(PathBuf::from(arg))
        }
    }

    /// How the source is named in messages and the checkpoint (`-` for stdin).
    pub fn display(&self) -> String {
        match self {
            InputSource::Stdin => "-".to_owned(),
            InputSource::File(p) => p.display().to_string(),
        }
    }

    /// The file, if the source is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            InputSource::Stdin => None,
            InputSource::File(p) => Some(p),
        }
    }
}

/// An opened input.
pub struct OpenInput {
    /// The decoded bytes (decompressed when the input is gzip).
    pub reader: Box<dyn Read + Send>,
    /// Whether the input was gzip.
    pub gzip: bool,
    /// Size of the file in bytes, when known (not for stdin or pipes).
    pub size: Option<u64>,
    /// Bytes taken from the file or stdin so far (compressed bytes for gzip).
    pub consumed: Arc<AtomicU64>,
}

impl std::fmt::Debug for OpenInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenInput")
            .field("gzip", &self.gzip)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Opens `source`, sniffing for gzip.
pub fn open(source: &InputSource) -> io::Result<OpenInput> {
    let consumed = Arc::new(AtomicU64::new(0));
    let (raw, size): (Box<dyn Read + Send>, Option<u64>) = match source {
        InputSource::Stdin => (Box::new(io::stdin()), None),
        InputSource::File(path) => {
            let file = File::open(path)?;
            let meta = file.metadata()?;
            let size = meta.is_file().then_some(meta.len());
            (Box::new(file), size)
        }
    };
    let mut counting = CountingReader {
        inner: raw,
        count: Arc::clone(&consumed),
    };
    // Read the first two bytes (a pipe may deliver them one at a time), then put them
    // back in front of the rest.
    let mut head = [0u8; 2];
    let mut got = 0;
    while let Some(rest) = head.get_mut(got..).filter(|r| !r.is_empty()) {
        match counting.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let gzip = got == GZIP_MAGIC.len() && head == GZIP_MAGIC;
    let prefix = io::Cursor::new(head.get(..got).unwrap_or_default().to_vec());
    let buffered = BufReader::with_capacity(READ_BUFFER_BYTES, prefix.chain(counting));
    let reader: Box<dyn Read + Send> = if gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(OpenInput {
        reader,
        gzip,
        size,
        consumed,
    })
}

/// Counts the bytes read through it into a shared counter.
struct CountingReader {
    inner: Box<dyn Read + Send>,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(path: &Path) -> (Vec<u8>, bool, u64) {
        let mut input = open(&InputSource::File(path.to_owned())).unwrap();
        let mut out = Vec::new();
        input.reader.read_to_end(&mut out).unwrap();
        (out, input.gzip, input.consumed.load(Ordering::Relaxed))
    }

    #[test]
    fn open_detects_gzip_by_magic_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("rows.gz");
        std::fs::write(&plain, b"key,a\nk,1\n").unwrap();
        let (bytes, gz, consumed) = read_all(&plain);
        assert_eq!(
            (bytes.as_slice(), gz, consumed),
            (&b"key,a\nk,1\n"[..], false, 10)
        );
        let packed = dir.path().join("rows.csv");
        let mut data = gzip(b"key,a\n");
        data.extend(gzip(b"k,1\n"));
        std::fs::write(&packed, &data).unwrap();
        let (bytes, gz, consumed) = read_all(&packed);
        assert_eq!(bytes, b"key,a\nk,1\n", "both gzip members are read");
        assert!(gz);
        assert_eq!(consumed, data.len() as u64);
    }

    #[test]
    fn open_empty_file_is_not_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let (bytes, gz, _) = read_all(&empty);
        assert!(bytes.is_empty() && !gz);
    }
}
