//! Opening an input stream: compression (explicit, by extension, or by magic bytes),
//! tagging decompression errors, and stripping a UTF-8 BOM.

use std::fmt;
use std::io::{self, Cursor, Read};

use crate::definition::Compression;

/// An error raised inside a decompressor, carried through `io::Error` so the engine can
/// tell a corrupt archive from a failing source.
#[derive(Debug)]
pub(crate) struct DecompressError {
    pub codec: &'static str,
    pub source: io::Error,
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} decompression failed: {}", self.codec, self.source)
    }
}

impl std::error::Error for DecompressError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// If `e` came from a decompressor, its codec and the underlying error.
pub(crate) fn as_decompress(e: &io::Error) -> Option<(&'static str, String)> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<DecompressError>())
        .map(|d| (d.codec, d.source.to_string()))
}

struct Tagged<R> {
    inner: R,
    codec: &'static str,
}

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            io::Error::other(DecompressError {
                codec: self.codec,
                source: e,
            })
        })
    }
}

/// Reads up to `N` bytes (fewer only at EOF).
fn peek<const N: usize, R: Read>(r: &mut R) -> io::Result<([u8; N], usize)> {
    let mut head = [0u8; N];
    let mut n = 0;
    while n < N {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((head, n))
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// The codec of an input starting with `head` (at least its first 4 bytes) named `name`:
/// "gzip", "zstd", or "" for plain text.
pub(crate) fn codec(head: &[u8], name: &str, compression: Compression) -> &'static str {
    let lower = name.to_ascii_lowercase();
    match compression {
        Compression::None => "",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Auto => {
            if head.starts_with(&GZIP_MAGIC) {
                "gzip"
            } else if head.starts_with(&ZSTD_MAGIC) {
                "zstd"
            } else if lower.ends_with(".gz") || lower.ends_with(".gzip") {
                "gzip"
            } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
                "zstd"
            } else {
                ""
            }
        }
    }
}

/// The opened input: decompressed, BOM removed; `bom_len` bytes were skipped.
pub(crate) struct Opened<'r> {
    pub reader: Box<dyn Read + 'r>,
    pub bom_len: u64,
}

/// Opens `reader` per `compression` (auto: magic bytes, then the name's extension).
/// Errors are `(codec, error)`; codec is "" for plain I/O errors.
pub(crate) fn open<'r, R: Read + 'r>(
    mut reader: R,
    name: &str,
    compression: Compression,
) -> Result<Opened<'r>, (&'static str, io::Error)> {
    let (head, n) = peek::<4, _>(&mut reader).map_err(|e| ("", e))?;
    let head_bytes = head[..n].to_vec();
    let rest = Cursor::new(head_bytes).chain(reader);
    let codec = codec(&head[..n], name, compression);
    let mut decoded: Box<dyn Read + 'r> = match codec {
        "gzip" => Box::new(Tagged {
            inner: flate2::read::MultiGzDecoder::new(rest),
            codec,
        }),
        "zstd" => Box::new(Tagged {
            inner: zstd::stream::read::Decoder::new(rest).map_err(|e| (codec, e))?,
            codec,
        }),
        _ => Box::new(rest),
    };
    let (bom, m) = peek::<3, _>(&mut decoded).map_err(|e| match as_decompress(&e) {
        Some((c, _)) => (c, e),
        None => ("", e),
    })?;
    let (keep, bom_len) = if m == 3 && bom == BOM {
        (Vec::new(), 3)
    } else {
        (bom[..m].to_vec(), 0)
    };
    Ok(Opened {
        reader: Box::new(Cursor::new(keep).chain(decoded)),
        bom_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(data: &[u8], name: &str, c: Compression) -> Result<(Vec<u8>, u64), String> {
        let mut o = open(data, name, c).map_err(|(c, e)| format!("{c}: {e}"))?;
        let mut v = Vec::new();
        o.reader.read_to_end(&mut v).map_err(|e| e.to_string())?;
        Ok((v, o.bom_len))
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_bom_gzip_zstd() {
        assert_eq!(
            read_all(b"a,b\n", "x.csv", Compression::Auto).unwrap(),
            (b"a,b\n".to_vec(), 0)
        );
        assert_eq!(
            read_all(b"\xef\xbb\xbfa\n", "x.csv", Compression::Auto).unwrap(),
            (b"a\n".to_vec(), 3)
        );
        assert_eq!(
            read_all(b"", "x.csv", Compression::Auto).unwrap(),
            (vec![], 0)
        );
        assert_eq!(
            read_all(b"ab", "x.csv", Compression::Auto).unwrap(),
            (b"ab".to_vec(), 0)
        );
        let gz = gzip(b"\xef\xbb\xbfa,b\n1,2\n");
        assert_eq!(
            read_all(&gz, "x", Compression::Auto).unwrap().0,
            b"a,b\n1,2\n"
        );
        assert_eq!(
            read_all(&gz, "x", Compression::Gzip).unwrap().0,
            b"a,b\n1,2\n"
        );
        let zs = zstd::encode_all(&b"a,b\n1,2\n"[..], 1).unwrap();
        assert_eq!(
            read_all(&zs, "x.zst", Compression::Auto).unwrap().0,
            b"a,b\n1,2\n"
        );
        // Not gzip although named .gz: a decompression error, not a panic.
        let e = read_all(b"a,b\n1,2\n", "x.csv.gz", Compression::Auto).unwrap_err();
        assert!(e.contains("gzip"), "{e}");
        let mut trunc = gz.clone();
        trunc.truncate(gz.len() / 2);
        assert!(read_all(&trunc, "x", Compression::Auto).is_err());
        // Explicit none keeps the bytes.
        assert_eq!(read_all(&gz, "x", Compression::None).unwrap().0, gz);
    }
}
