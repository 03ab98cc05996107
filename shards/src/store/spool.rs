//! The on-disk spool: insert-ready chunks the store could not take in time,
//! kept in order as one file each (`<sequence>.chunk`, 20 digits, so names
//! sort in order) and replayed oldest first, also after a restart.
//!
//! A file is the insert statement, a newline, then the Native blocks: the
//! exact bytes an embedded insert sends, and the statement names the columns
//! and the format the data was encoded with, so a spool written before a
//! column was switched on still inserts, and so does one written before
//! Weir encoded Native (its statement says `FORMAT RowBinary`, and its rows
//! go to the engine as they are). Files are written to `NAME.tmp` and renamed,
//! so a crash leaves no half chunk. A chunk is deleted once inserted: a
//! crash between the two inserts it again at the next start (at least once).
//!
//! Bounded by `store.spool_bytes_max`: a chunk that does not fit is refused
//! and the caller counts its rows as dropped.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Chunk;

pub struct Spool {
    dir: PathBuf,
    bytes_max: u64,
    bytes: u64,
    next_sequence: u64,
    /// Oldest first: (sequence, bytes, rows).
    files: VecDeque<(u64, u64, u64)>,
}

impl Spool {
    /// Opens `dir` (created if missing) and finds the chunks left there.
    pub fn open(dir: &Path, bytes_max: u64) -> Result<Spool, String> {
        fs::create_dir_all(dir).map_err(|e| format!("store.spool_dir {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| format!("store.spool_dir {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(sequence) = name.strip_suffix(".chunk").and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let rows = read_rows(&entry.path()).unwrap_or(0);
            files.push((sequence, bytes, rows));
        }
        files.sort_unstable();
        let bytes = files.iter().map(|f| f.1).sum();
        let next_sequence = files.last().map_or(1, |f| f.0 + 1);
        Ok(Spool { dir: dir.to_path_buf(), bytes_max, bytes, next_sequence, files: files.into() })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn chunks(&self) -> usize {
        self.files.len()
    }

    /// Rows waiting in the spool.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    /// Appends `chunk` at the end. Err: it does not fit, or the disk failed.
    pub fn push(&mut self, chunk: &Chunk) -> Result<(), SpoolRefusal> {
        let size = chunk.bytes.len() as u64 + 8;
        if self.bytes + size > self.bytes_max {
            return Err(SpoolRefusal::Full);
        }
        let sequence = self.next_sequence;
        let path = self.path(sequence);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&chunk.rows.to_le_bytes())?;
            f.write_all(&chunk.bytes)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolRefusal::Disk(e.to_string()));
        }
        self.next_sequence += 1;
        self.bytes += size;
        self.files.push_back((sequence, size, chunk.rows));
        Ok(())
    }

    /// The oldest chunk, read back. A file that cannot be read is removed
    /// and reported with its rows (the caller counts them as dropped).
    pub fn front(&mut self) -> Option<Result<Chunk, (u64, String)>> {
        let &(sequence, _, rows) = self.files.front()?;
        let path = self.path(sequence);
        Some(match fs::read(&path) {
            Ok(data) if data.len() >= 8 => {
                let rows = u64::from_le_bytes(data[..8].try_into().unwrap());
                let bytes = data[8..].to_vec();
                match bytes.iter().position(|&b| b == b'\n') {
                    Some(sql_len) => {
                        let table = super::table_of(&String::from_utf8_lossy(&bytes[..sql_len]));
                        Ok(Chunk { sql_len, table, rows, bytes, arrivals: Vec::new(), tickets: Vec::new() })
                    }
                    None => {
                        self.pop_front();
                        Err((rows, format!("{}: no insert statement", path.display())))
                    }
                }
            }
            Ok(_) => {
                self.pop_front();
                Err((rows, format!("{}: truncated", path.display())))
            }
            Err(e) => {
                self.pop_front();
                Err((rows, format!("{}: {e}", path.display())))
            }
        })
    }

    /// Forgets the oldest chunk (inserted, or unreadable).
    pub fn pop_front(&mut self) {
        if let Some((sequence, size, _)) = self.files.pop_front() {
            let _ = fs::remove_file(self.path(sequence));
            self.bytes -= size;
        }
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence:020}.chunk"))
    }
}

/// How many rejected chunks `keep_rejected` keeps (the newest).
pub const REJECTED_KEPT: usize = 16;

/// Writes `chunk` as a spool file under `dir/rejected/` (for an operator to
/// look at, or replay by moving it back), keeping the newest
/// [`REJECTED_KEPT`]; returns its path.
pub fn keep_rejected(dir: &Path, chunk: &Chunk) -> Result<PathBuf, String> {
    let rejected = dir.join("rejected");
    fs::create_dir_all(&rejected).map_err(|e| format!("{}: {e}", rejected.display()))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = rejected.join(format!("{stamp:030}.chunk"));
    let mut file = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(&chunk.rows.to_le_bytes())
        .and_then(|()| file.write_all(&chunk.bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut names: Vec<PathBuf> =
        fs::read_dir(&rejected).map_err(|e| e.to_string())?.flatten().map(|e| e.path()).collect();
    names.sort();
    for old in names.iter().rev().skip(REJECTED_KEPT) {
        let _ = fs::remove_file(old);
    }
    Ok(path)
}

fn read_rows(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut head = [0u8; 8];
    fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    Some(u64::from_le_bytes(head))
}

#[derive(Debug)]
pub enum SpoolRefusal {
    Full,
    Disk(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(rows: u64, body: &[u8]) -> Chunk {
        let mut chunk = Chunk::new("INSERT INTO weir.flows (a) FORMAT Native", Vec::new());
        chunk.bytes.extend_from_slice(body);
        chunk.rows = rows;
        chunk
    }

    #[test]
    fn keeps_order_across_reopen_and_bounds_its_size() {
        let dir = std::env::temp_dir().join(format!("weir-spool-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut s = Spool::open(&dir, 200).unwrap();
        s.push(&chunk(1, b"one")).unwrap();
        s.push(&chunk(2, b"two")).unwrap();
        assert!(matches!(s.push(&chunk(3, &[0; 200])), Err(SpoolRefusal::Full)));
        drop(s);
        let mut s = Spool::open(&dir, 200).unwrap();
        assert_eq!((s.chunks(), s.rows()), (2, 3));
        let first = s.front().unwrap().unwrap();
        assert_eq!((first.rows, first.rows_bytes()), (1, &b"one"[..]));
        s.pop_front();
        s.push(&chunk(4, b"four")).unwrap();
        assert_eq!(s.front().unwrap().unwrap().rows_bytes(), b"two");
        s.pop_front();
        assert_eq!(s.front().unwrap().unwrap().rows_bytes(), b"four");
        s.pop_front();
        assert!(s.is_empty() && s.bytes() == 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
