//! Reading CSV records: a record without quotes is split where it lies in the buffer,
//! 16 bytes at a time (SIMD compares through `wide`); any other record (one with a quote,
//! or a comment line) is parsed by `csv_core`, so the dialect rules are those of the `csv`
//! crate, and so are record positions.

use std::io::{self, Read};

use wide::u8x16;

use crate::definition::Dialect;

/// Buffer size: small enough for the bytes read to stay in the core's cache while their
/// records are typed (128 KiB measured slower); records longer than this grow it.
const BUFFER_BYTES: usize = 64 * 1024;

/// Field bounds are `u32`: a longer record is an error, not a wrap-around.
const MAX_RECORD_BYTES: usize = u32::MAX as usize;

fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a CSV record is longer than 4 GiB",
    )
}

/// Where a record is: the reader's position when it began reading it, as the `csv` crate
/// reports it (blank lines before the record are included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// Offset in the stream.
    pub byte: u64,
    /// 1-based line.
    pub line: u64,
}

/// One record: its fields, borrowed from the reader until the next read.
pub(crate) struct Record<'a> {
    /// The bytes the fields lie in (with their delimiters when split in place).
    data: &'a [u8],
    /// Start and end of each field in `data`, in pairs.
    bounds: &'a [u32],
    pub position: Position,
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.bounds.len() / 2
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        field(self.data, self.bounds, i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The record's fields as text when every byte of every field is ASCII (one check for
    /// the whole record instead of a UTF-8 check per field).
    pub fn as_ascii(&self) -> Option<AsciiRecord<'a>> {
        self.data.is_ascii().then_some(AsciiRecord {
            data: self.data,
            bounds: self.bounds,
        })
    }
}

/// Records read together ([`RecordReader::read_batch`]), borrowed from the reader until
/// the next read: the engine looks at all of their group keys before typing the first.
pub(crate) struct Batch<'a> {
    /// The bytes the records lie in.
    data: &'a [u8],
    /// The records' field bounds, one run per record.
    bounds: &'a [u32],
    spans: &'a [Span],
}

/// Where one record of a [`Batch`] is.
#[derive(Clone, Copy)]
struct Span {
    /// `data[start..end]`.
    start: usize,
    end: usize,
    /// Its field bounds are `bounds[first_bound..end_bound]`.
    first_bound: usize,
    end_bound: usize,
    position: Position,
}

impl<'a> Batch<'a> {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The records, in stream order.
    pub fn iter(&self) -> impl Iterator<Item = Record<'a>> + '_ {
        self.spans.iter().map(|s| Record {
            data: &self.data[s.start..s.end],
            bounds: &self.bounds[s.first_bound..s.end_bound],
            position: s.position,
        })
    }
}

/// Field `i` of the fields that `bounds` (start and end, in pairs) mark in `data`.
#[inline]
fn field<'a>(data: &'a [u8], bounds: &[u32], i: usize) -> Option<&'a [u8]> {
    let (start, end) = (*bounds.get(2 * i)?, *bounds.get(2 * i + 1)?);
    data.get(start as usize..end as usize)
}

/// A [`Record`] whose bytes are all ASCII ([`Record::as_ascii`]).
#[derive(Clone, Copy)]
pub(crate) struct AsciiRecord<'a> {
    data: &'a [u8],
    bounds: &'a [u32],
}

impl<'a> AsciiRecord<'a> {
    /// Field `i` as text.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let bytes = field(self.data, self.bounds, i)?;
        // SAFETY: `Record::as_ascii` made this only for data that is all ASCII, and any
        // slice of ASCII bytes is UTF-8. (Checking each field again costs 7% of a run.)
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    }
}

/// The bytes the in-place splitter stops at: the delimiter, and the bytes that end a
/// field otherwise (a line feed, a carriage return, the quote; the line feed repeated
/// when the dialect has no quote).
struct Stops {
    delimiter: u8x16,
    ends: [u8x16; 3],
    /// Whether records may be split in place at all: not when the delimiter is a line
    /// break or the quote, which only `csv_core` sorts out.
    usable: bool,
}

impl Stops {
    fn new(d: &Dialect) -> Self {
        let ends = [b'\n', b'\r', d.quote.unwrap_or(b'\n')];
        Stops {
            delimiter: u8x16::splat(d.delimiter),
            ends: ends.map(u8x16::splat),
            usable: !matches!(d.delimiter, b'\n' | b'\r') && Some(d.delimiter) != d.quote,
        }
    }

    /// (delimiters, ends): bit k set when `chunk[k]` is one.
    #[inline]
    fn masks(&self, chunk: [u8; 16]) -> (u32, u32) {
        let v = u8x16::new(chunk);
        let [a, b, c] = &self.ends;
        let ends = v.cmp_eq(*a) | v.cmp_eq(*b) | v.cmp_eq(*c);
        (
            v.cmp_eq(self.delimiter).move_mask() as u32,
            ends.move_mask() as u32,
        )
    }
}

/// What the in-place splitter made of the record at the read position.
enum Split {
    /// A record: `data` is `buf[start..end]`; the read position moved past its end.
    Record { start: usize, end: usize },
    /// The record needs the full CSV rules.
    Parse,
    /// The buffer ends inside the record.
    NeedMore,
    /// No more records.
    End,
}

/// Reads records from a byte stream in a [`Dialect`].
pub(crate) struct RecordReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Bytes `buf[..filled]` hold data; `buf[at..filled]` is unread.
    at: usize,
    filled: usize,
    eof: bool,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Line of `buf[at]`.
    line: u64,
    stops: Stops,
    comment: Option<u8>,
    core: csv_core::Reader,
    /// Fields of the current record: pairs of (start, end).
    bounds: Vec<u32>,
    /// Fields of a record parsed by `csv_core`, and where each ends.
    parsed: Vec<u8>,
    parsed_len: usize,
    ends: Vec<usize>,
    /// The records of the last batch.
    spans: Vec<Span>,
}

impl<R: Read> RecordReader<R> {
    pub fn new(dialect: &Dialect, src: R) -> Self {
        Self::with_capacity(dialect, src, BUFFER_BYTES)
    }

    fn with_capacity(d: &Dialect, src: R, capacity: usize) -> Self {
        let core = csv_core::ReaderBuilder::new()
            .delimiter(d.delimiter)
            .quote(d.quote.unwrap_or(b'"'))
            .quoting(d.quote.is_some())
            .escape(d.escape)
            .comment(d.comment)
            .build();
        RecordReader {
            src,
            buf: vec![0; capacity.max(16)],
            at: 0,
            filled: 0,
            eof: false,
            base: 0,
            line: 1,
            stops: Stops::new(d),
            comment: d.comment,
            core,
            bounds: Vec::with_capacity(64),
            parsed: vec![0; 1024],
            parsed_len: 0,
            ends: vec![0; 64],
            spans: Vec::new(),
        }
    }

    /// The position after the last record read.
    pub fn position(&self) -> Position {
        Position {
            byte: self.base + self.at as u64,
            line: self.line,
        }
    }

    /// The next record, or `None` at the end of the stream.
    pub fn read(&mut self) -> io::Result<Option<Record<'_>>> {
        let position = self.position();
        loop {
            self.bounds.clear();
            match self.split() {
                Split::Record { start, end } => {
                    return Ok(Some(Record {
                        data: &self.buf[start..end],
                        bounds: &self.bounds,
                        position,
                    }))
                }
                Split::NeedMore => {
                    self.refill()?;
                }
                Split::End => return Ok(None),
                Split::Parse => {
                    return Ok(self.parse()?.then_some(Record {
                        data: &self.parsed[..self.parsed_len],
                        bounds: &self.bounds,
                        position,
                    }))
                }
            }
        }
    }

    /// The next records, at most `max` (at least one), as many as are split in place
    /// from what the buffer holds; empty at the end of the stream. A record that needs
    /// the full CSV rules comes in a batch of its own.
    pub fn read_batch(&mut self, max: usize) -> io::Result<Batch<'_>> {
        self.bounds.clear();
        self.spans.clear();
        let mut parsed = false;
        // The first record's position, kept across refills (as in `read`).
        let mut first_position = None;
        while self.spans.len() < max.max(1) {
            let position = first_position.take().unwrap_or_else(|| self.position());
            let first_bound = self.bounds.len();
            let split = self.split();
            if let Split::Record { start, end } = split {
                self.spans.push(Span {
                    start,
                    end,
                    first_bound,
                    end_bound: self.bounds.len(),
                    position,
                });
                continue;
            }
            if !self.spans.is_empty() {
                // Left for the next batch, as it was: the blank lines before it too (they
                // count in its position), and none of its fields.
                self.at = (position.byte - self.base) as usize;
                self.line = position.line;
                self.bounds.truncate(first_bound);
                break;
            }
            match split {
                Split::NeedMore => {
                    first_position = Some(position);
                    self.refill()?;
                }
                Split::Parse => {
                    parsed = self.parse()?;
                    if parsed {
                        self.spans.push(Span {
                            start: 0,
                            end: self.parsed_len,
                            first_bound: 0,
                            end_bound: self.bounds.len(),
                            position,
                        });
                    }
                    break;
                }
                Split::End | Split::Record { .. } => break,
            }
        }
        Ok(Batch {
            data: if parsed { &self.parsed } else { &self.buf },
            bounds: &self.bounds,
            spans: &self.spans,
        })
    }

    /// Splits the record at the read position where it lies, if it has no quote and does
    /// not start with a comment; its field bounds are added to `bounds`. Blank lines before it are skipped, as `csv_core` does;
    /// a carriage return or a line feed ends it.
    #[inline]
    fn split(&mut self) -> Split {
        if !self.stops.usable {
            return Split::Parse;
        }
        let filled = self.filled;
        let buf = &self.buf[..filled];
        let mut start = self.at;
        loop {
            match buf.get(start) {
                None if self.eof => return Split::End,
                None => return Split::NeedMore,
                // A blank line (an empty record, which `csv_core` skips too).
                Some(b'\n') => {
                    start += 1;
                    self.at = start;
                    self.line += 1;
                }
                Some(b'\r') => {
                    start += 1;
                    self.at = start;
                }
                Some(&b) if Some(b) == self.comment => return Split::Parse,
                Some(_) => break,
            }
        }
        let mut field = start;
        let mut chunk_at = start;
        loop {
            let (delimiters, ends) = match buf.get(chunk_at..chunk_at + 16) {
                Some(chunk) => {
                    let mut bytes = [0u8; 16];
                    bytes.copy_from_slice(chunk);
                    self.stops.masks(bytes)
                }
                None => {
                    let rest = &buf[chunk_at..];
                    let mut bytes = [0u8; 16];
                    bytes[..rest.len()].copy_from_slice(rest);
                    let (delimiters, ends) = self.stops.masks(bytes);
                    let filled = (1u32 << rest.len()) - 1;
                    (delimiters & filled, ends & filled)
                }
            };
            // The fields ended by delimiters before the chunk's first end, if any.
            let first_end = ends.trailing_zeros();
            let mut fields = delimiters & ((1u64 << first_end) - 1) as u32;
            while fields != 0 {
                let i = chunk_at + fields.trailing_zeros() as usize;
                fields &= fields - 1;
                self.bounds
                    .extend([(field - start) as u32, (i - start) as u32]);
                field = i + 1;
            }
            if ends != 0 {
                let i = chunk_at + first_end as usize;
                let b = buf[i];
                if b != b'\n' && b != b'\r' {
                    // A quote.
                    return Split::Parse;
                }
                // Either ends a record; a line feed after a carriage return is then a
                // blank line. Lines are counted by line feeds.
                self.bounds
                    .extend([(field - start) as u32, (i - start) as u32]);
                self.at = i + 1;
                self.line += u64::from(b == b'\n');
                return Split::Record { start, end: i };
            }
            chunk_at += 16;
            if chunk_at >= filled {
                if !self.eof {
                    return Split::NeedMore;
                }
                // The last record, without a line end.
                self.bounds
                    .extend([(field - start) as u32, (filled - start) as u32]);
                self.at = filled;
                return Split::Record { start, end: filled };
            }
        }
    }

    /// Parses the record at the read position with `csv_core`; false at the end.
    fn parse(&mut self) -> io::Result<bool> {
        self.core.reset();
        let (mut out, mut nends) = (0, 0);
        loop {
            // Empty input tells `csv_core` the stream ended: only give it that at the end.
            if self.at == self.filled && !self.eof {
                self.refill()?;
                continue;
            }
            let input = &self.buf[self.at..self.filled];
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.parsed[out..], &mut self.ends[nends..]);
            self.line += input[..nin].iter().filter(|&&b| b == b'\n').count() as u64;
            self.at += nin;
            out += nout;
            nends += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    if self.parsed.len() >= MAX_RECORD_BYTES {
                        return Err(too_long());
                    }
                    self.parsed.resize(self.parsed.len() * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    self.ends.resize(self.ends.len() * 2, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    self.bounds.clear();
                    let mut from = 0;
                    for &end in &self.ends[..nends] {
                        self.bounds.extend([from as u32, end as u32]);
                        from = end;
                    }
                    self.parsed_len = out;
                    return Ok(true);
                }
                csv_core::ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Drops the bytes before the read position and reads more after the unread ones
    /// (growing the buffer when they fill it); sets `eof` when the stream ends.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.at..self.filled, 0);
        self.base += self.at as u64;
        self.filled -= self.at;
        self.at = 0;
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_RECORD_BYTES {
                return Err(too_long());
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.filled += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{BadRowPolicy, Compression};

    fn dialect(
        delimiter: u8,
        quote: Option<u8>,
        escape: Option<u8>,
        comment: Option<u8>,
    ) -> Dialect {
        Dialect {
            header: false,
            delimiter,
            quote,
            escape,
            comment,
            null: String::new(),
            file_columns: None,
            compression: Compression::None,
            on_bad_row: BadRowPolicy::Quarantine,
        }
    }

    /// Each record's fields and (byte, line), then the final (byte, line).
    type Read = (Vec<(Vec<Vec<u8>>, u64, u64)>, (u64, u64));

    /// The records as the csv crate reads them (the engine's reader before this one).
    fn with_csv_crate(d: &Dialect, data: &[u8]) -> Read {
        let mut b = csv::ReaderBuilder::new();
        b.has_headers(false)
            .flexible(true)
            .delimiter(d.delimiter)
            .escape(d.escape)
            .comment(d.comment);
        match d.quote {
            Some(q) => b.quote(q),
            None => b.quoting(false),
        };
        let mut rdr = b.from_reader(data);
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while rdr.read_byte_record(&mut rec).unwrap() {
            let p = rec.position().unwrap();
            out.push((rec.iter().map(<[u8]>::to_vec).collect(), p.byte(), p.line()));
        }
        (out, (rdr.position().byte(), rdr.position().line()))
    }

    /// The records as [`RecordReader::read`] reads them (`batch` 0) or as
    /// [`RecordReader::read_batch`] does, `batch` at most at a time.
    fn with_record_reader(d: &Dialect, data: &[u8], capacity: usize, batch: usize) -> Read {
        let mut rdr = RecordReader::with_capacity(d, data, capacity);
        let mut out = Vec::new();
        let mut add = |rec: Record<'_>| {
            let p = rec.position;
            out.push((rec.iter().map(<[u8]>::to_vec).collect(), p.byte, p.line));
        };
        if batch == 0 {
            while let Some(rec) = rdr.read().unwrap() {
                add(rec);
            }
        } else {
            loop {
                let records = rdr.read_batch(batch).unwrap();
                if records.is_empty() {
                    break;
                }
                assert!(records.iter().count() <= batch);
                records.iter().for_each(&mut add);
            }
        }
        let end = rdr.position();
        (out, (end.byte, end.line))
    }

    /// Asserts equal reads, naming the first record that differs.
    fn assert_same(got: &Read, want: &Read, case: &str) {
        for (k, (g, w)) in got.0.iter().zip(&want.0).enumerate() {
            assert_eq!(g, w, "record {k}: {case}");
        }
        assert_eq!(got.0.len(), want.0.len(), "records: {case}");
        assert_eq!(got.1, want.1, "end position: {case}");
    }

    /// Random inputs made of the bytes CSV gives meaning to, in several dialects and
    /// buffer sizes (records cut by refills), read exactly as the csv crate reads them,
    /// one record at a time or in batches.
    #[test]
    fn reads_as_the_csv_crate_does() {
        let dialects = [
            dialect(b',', Some(b'"'), None, None),
            dialect(b';', Some(b'\''), Some(b'\\'), Some(b'#')),
            dialect(b'\t', None, None, Some(b'#')),
            dialect(b',', Some(b'"'), Some(b'\\'), None),
            // Only `csv_core` reads these.
            dialect(b'\n', Some(b'"'), None, None),
            dialect(b'"', Some(b'"'), None, None),
        ];
        let alphabet = b"ab,;\t\"'\\#\r\n \xc3\xa9";
        let mut next = crate::testing::xorshift(11);
        for round in 0..3000 {
            let len = (next() % 120) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    // Mostly plain text, so records also take the in-place path.
                    let k = next() as usize % (alphabet.len() * 3);
                    alphabet.get(k).copied().unwrap_or(b'x')
                })
                .collect();
            for d in &dialects {
                let want = with_csv_crate(d, &data);
                for capacity in [16, 17, 40, BUFFER_BYTES] {
                    for batch in [0, 1, 3, 16] {
                        let got = with_record_reader(d, &data, capacity, batch);
                        assert_same(
                            &got,
                            &want,
                            &format!(
                                "round {round}, {d:?}, capacity {capacity}, batch {batch}, \
                                 {data:?}"
                            ),
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn long_plain_records_and_crlf() {
        let d = dialect(b',', Some(b'"'), None, None);
        let mut data = Vec::new();
        for i in 0..500 {
            let field = "v".repeat(i % 70);
            data.extend_from_slice(format!("{i},{field},x{i}\r\n").as_bytes());
            if i % 7 == 0 {
                data.extend_from_slice(b"\n\"q,\"\"\",2\n");
            }
        }
        let want = with_csv_crate(&d, &data);
        assert_eq!(want.0.len(), 500 + 72);
        for capacity in [16, 100, 1000, BUFFER_BYTES] {
            for batch in [0, 5, 16] {
                let got = with_record_reader(&d, &data, capacity, batch);
                assert_same(&got, &want, &format!("capacity {capacity}, batch {batch}"));
            }
        }
    }

    /// A record is text only when all of it is ASCII (split in place or by `csv_core`);
    /// its text fields are then its fields.
    #[test]
    fn ascii_records_as_text() {
        let d = dialect(b',', Some(b'"'), None, None);
        let data = "a,bc,,d\n\"q,\"\"x\",y\né,z\nw,\"é\"\n";
        let mut rdr = RecordReader::new(&d, data.as_bytes());
        let mut texts = Vec::new();
        while let Some(rec) = rdr.read().unwrap() {
            texts.push(rec.as_ascii().map(|text| {
                let fields: Vec<&str> = (0..rec.len()).filter_map(|i| text.get(i)).collect();
                assert_eq!(fields.len(), rec.len());
                for (i, f) in fields.iter().enumerate() {
                    assert_eq!(Some(f.as_bytes()), rec.get(i));
                }
                fields.join("|")
            }));
        }
        let want = [Some("a|bc||d"), Some("q,\"x|y"), None, None];
        assert_eq!(texts, want.map(|t| t.map(String::from)));
    }
}
