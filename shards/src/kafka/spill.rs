//! A shard's spill: the records the brokers do not take yet, on disk, in
//! order, bounded in bytes.
//!
//! One directory per shard holding numbered segment files
//! (`00000000000000000001.spill`, ...), each a run of records framed as a
//! little-endian `u32` length and the bytes. Records are appended to the
//! newest segment and read back from the oldest; a segment read to its end
//! is deleted. What a stop or a crash leaves is read back at the next
//! start, from the start of the oldest segment (records of it that were
//! already produced go out again: at least once). A record cut short by a
//! crash ends its segment (counted by the caller as `torn`). Records older
//! than every spilled one (those a stop took back from the producer) go
//! in front (`prepend`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A segment is closed for appending past this many bytes.
const SEGMENT_BYTES: u64 = 64 << 20;

/// The first segment's number: segments put in front of the oldest
/// (`prepend`) count down from it.
const FIRST: u64 = 1 << 40;

/// Longest record taken (a datagram is at most 64 KiB, and the record's
/// other fields are a few dozen bytes).
const RECORD_BYTES_MAX: usize = 1 << 20;

/// Why a record was not spilled.
#[derive(Debug)]
pub enum SpillError {
    /// `spill_bytes_max` reached.
    Full,
    Io(io::Error),
}

impl std::fmt::Display for SpillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpillError::Full => f.write_str("the spill is full (kafka.spill_bytes_max)"),
            SpillError::Io(e) => write!(f, "spill: {e}"),
        }
    }
}

pub struct Spill {
    dir: PathBuf,
    bytes_max: u64,
    /// Bytes of the records not read back yet (framing included).
    bytes: u64,
    /// Segment numbers on disk, oldest first.
    segments: std::collections::VecDeque<u64>,
    writer: Option<(u64, BufWriter<File>, u64)>,
    reader: Option<(u64, BufReader<File>)>,
    /// Records cut short by a crash, found while reading.
    pub torn: u64,
}

impl Spill {
    /// Opens (creating) `dir`, taking the segments a previous run left.
    pub fn open(dir: &Path, bytes_max: u64) -> io::Result<Spill> {
        fs::create_dir_all(dir)?;
        let mut segments = Vec::new();
        let mut bytes = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".spill")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            bytes += entry.metadata()?.len();
            segments.push(n);
        }
        segments.sort_unstable();
        Ok(Spill {
            dir: dir.to_path_buf(),
            bytes_max,
            bytes,
            segments: segments.into(),
            writer: None,
            reader: None,
            torn: 0,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Bytes waiting (framing included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.spill"))
    }

    /// Appends one record after every other.
    pub fn push(&mut self, record: &[u8]) -> Result<(), SpillError> {
        let framed = record.len() as u64 + 4;
        if record.len() > RECORD_BYTES_MAX || self.bytes + framed > self.bytes_max {
            return Err(SpillError::Full);
        }
        if self.writer.as_ref().is_none_or(|w| w.2 >= SEGMENT_BYTES) {
            if let Some((_, mut w, _)) = self.writer.take() {
                w.flush().map_err(SpillError::Io)?;
            }
            let n = self.segments.back().map_or(FIRST, |n| n + 1);
            let file = OpenOptions::new().create_new(true).append(true).open(self.path(n)).map_err(SpillError::Io)?;
            self.segments.push_back(n);
            self.writer = Some((n, BufWriter::with_capacity(256 << 10, file), 0));
        }
        let (_, w, written) = self.writer.as_mut().expect("opened above");
        w.write_all(&(record.len() as u32).to_le_bytes()).map_err(SpillError::Io)?;
        w.write_all(record).map_err(SpillError::Io)?;
        *written += framed;
        self.bytes += framed;
        Ok(())
    }

    /// Puts `records` before every record the spill holds, in their order
    /// (they are older: taken back from the producer at a stop). They are
    /// not held to `bytes_max` (the producer's queue bounded them). The
    /// oldest segment's unread records are copied behind them, so that the
    /// new front segment is read from its start.
    pub fn prepend<'a>(&mut self, records: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        self.flush()?;
        let oldest = self.segments.front().copied();
        let n = oldest.map_or(FIRST, |n| n - 1);
        let mut w =
            BufWriter::with_capacity(256 << 10, OpenOptions::new().create_new(true).append(true).open(self.path(n))?);
        let mut added = 0;
        for r in records {
            w.write_all(&(r.len() as u32).to_le_bytes())?;
            w.write_all(r)?;
            added += r.len() as u64 + 4;
        }
        if let Some((m, mut reader)) = self.reader.take() {
            if Some(m) == oldest {
                io::copy(&mut reader, &mut w)?;
                if self.writer.as_ref().is_some_and(|w| w.0 == m) {
                    self.writer = None;
                }
                self.segments.pop_front();
                let _ = fs::remove_file(self.path(m));
            }
        }
        w.flush()?;
        self.segments.push_front(n);
        self.bytes += added;
        Ok(())
    }

    /// Writes the buffered records out (to the page cache).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some((_, w, _)) => w.flush(),
            None => Ok(()),
        }
    }

    /// The oldest record, into `into`; `false` when none is left. The
    /// record is gone from the spill once read: a caller that cannot pass
    /// it on keeps it (and offers it again before reading the next).
    pub fn pop(&mut self, into: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            let Some(&oldest) = self.segments.front() else {
                self.bytes = 0;
                return Ok(false);
            };
            if self.writer.as_ref().is_some_and(|w| w.0 == oldest) {
                // Reading the segment being appended: what is buffered first.
                self.flush()?;
            }
            if self.reader.as_ref().is_none_or(|r| r.0 != oldest) {
                let file = File::open(self.path(oldest))?;
                self.reader = Some((oldest, BufReader::with_capacity(256 << 10, file)));
            }
            let (_, reader) = self.reader.as_mut().expect("opened above");
            let mut len = [0u8; 4];
            match read_full(reader, &mut len)? {
                4 => {
                    let n = u32::from_le_bytes(len) as usize;
                    into.clear();
                    if n <= RECORD_BYTES_MAX {
                        into.resize(n, 0);
                        if read_full(reader, into)? == n {
                            self.bytes = self.bytes.saturating_sub(n as u64 + 4);
                            return Ok(true);
                        }
                    }
                    self.torn += 1;
                }
                0 => {}
                _ => self.torn += 1,
            }
            // The segment's end (or a record cut short): done with it,
            // unless it is still being appended to.
            if self.writer.as_ref().is_some_and(|w| w.0 == oldest) {
                if self.bytes > 0 && self.segments.len() == 1 {
                    // A torn record inside the segment being written cannot
                    // happen (it is only cut at a crash): nothing more here.
                    return Ok(false);
                }
                self.writer = None;
            }
            self.reader = None;
            self.segments.pop_front();
            let _ = fs::remove_file(self.path(oldest));
            if self.segments.is_empty() {
                self.bytes = 0;
            }
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-spill-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let d = dir("order");
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        let record =
            |i: u32| -> Vec<u8> { i.to_be_bytes().iter().copied().cycle().take(1000 + i as usize % 7).collect() };
        let mut out = Vec::new();
        // Written and read interleaved, then left for the next start.
        for i in 0..200_000u32 {
            s.push(&record(i)).unwrap();
            if i % 3 == 0 {
                assert!(s.pop(&mut out).unwrap());
                assert_eq!(out, record(i / 3));
            }
        }
        assert!(s.segments.len() > 1, "several segments: {}", s.segments.len());
        s.flush().unwrap();
        let left = s.bytes();
        drop(s);
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        // The reopened spill counts the bytes of whole segments, the part
        // already read of the oldest one included: it is read again.
        assert!(s.bytes() >= left);
        let mut next = 200_000u32;
        let mut first = None;
        while s.pop(&mut out).unwrap() {
            let i = u32::from_be_bytes(out[..4].try_into().unwrap());
            first.get_or_insert(i);
            assert_eq!(out, record(i));
            next = i;
        }
        assert!(first.unwrap() <= 200_000 / 3, "from the oldest segment's start");
        assert_eq!((next, s.bytes(), s.torn), (199_999, 0, 0));
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0, "read segments deleted");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn records_taken_back_go_before_the_rest_even_mid_segment() {
        let d = dir("prepend");
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        let mut out = Vec::new();
        s.prepend([&b"a"[..]]).unwrap();
        for i in 0..10u8 {
            s.push(&[i]).unwrap();
        }
        assert!(s.pop(&mut out).unwrap());
        assert_eq!(out, b"a");
        assert!(s.pop(&mut out).unwrap());
        assert_eq!(out, [0]);
        // Mid-segment (the one being written): in front of records 1..9.
        s.prepend([&b"x"[..], &b"y"[..]]).unwrap();
        s.push(&[10]).unwrap();
        drop(s);
        let mut s = Spill::open(&d, 1 << 30).unwrap();
        let mut all = Vec::new();
        while s.pop(&mut out).unwrap() {
            all.push(out.clone());
        }
        let want: Vec<Vec<u8>> =
            [b"x".to_vec(), b"y".to_vec()].into_iter().chain((1..=10u8).map(|i| vec![i])).collect();
        assert_eq!(all, want);
        assert_eq!(s.bytes(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_spill_refuses_and_a_torn_record_ends_its_segment() {
        let d = dir("full");
        let mut s = Spill::open(&d, 100).unwrap();
        s.push(&[1; 40]).unwrap();
        s.push(&[2; 40]).unwrap();
        assert!(matches!(s.push(&[3; 40]), Err(SpillError::Full)));
        s.flush().unwrap();
        drop(s);
        // A crash cut the last record short.
        let path = d.join(format!("{:020}.spill", FIRST));
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
        let mut s = Spill::open(&d, 100).unwrap();
        let mut out = Vec::new();
        assert!(s.pop(&mut out).unwrap());
        assert_eq!(out, [1; 40]);
        assert!(!s.pop(&mut out).unwrap());
        assert_eq!((s.torn, s.bytes()), (1, 0));
        s.push(&[4; 40]).unwrap();
        assert!(s.pop(&mut out).unwrap());
        assert_eq!(out, [4; 40]);
        let _ = fs::remove_dir_all(&d);
    }
}
