//! Raw flows as Native segment files (`store.raw = "segments"`): the
//! writer appends each raw chunk's blocks, as the shards wrote them (sorted
//! per batch, uncompressed), to the file of the current minute, instead of
//! inserting them into the `flows` MergeTree table. Nothing is parsed,
//! sorted, compressed or merged; the engine reads the files in place
//! through the view `flows_segments` (`file('<dir>/flows-*.native',
//! 'Native', <columns>)` plus `SegmentMinute`, the minute of the file a row
//! is in: a condition on it reads only those files). perf/RESULTS.md has
//! the cost per flow and the query speed of both.
//!
//! - A minute's file is `flows-<minute start, s>-<n>.native.open` while
//!   written (the view does not read it: a block may be half written) and
//!   renamed `flows-<minute>-<n>.native` when the minute is over or the
//!   writer stops. `n` keeps a restart within the same minute apart.
//! - With `store.segments_compression = "zstd"` the files are
//!   `.native.zst`: one zstd frame per batch, which its shard compressed
//!   (a batch that reaches the file through a chunk, after a failed
//!   append, is compressed here). The engine reads concatenated frames as
//!   one stream, and the view reads both kinds of file.
//! - Writes bypass the page cache (`O_DIRECT`): the blocks are copied
//!   into an aligned staging buffer of 4 MiB and written from it in
//!   aligned pieces. Through the page cache, the kernel's copy of every
//!   byte was nearly all of the writer's time (perf/RESULTS.md). Each
//!   append ends with the file holding every whole block: the last,
//!   partial page is written padded and the padding cut off (the page is
//!   written again, whole, by the next append). A filesystem or device
//!   that refuses direct writes gets buffered ones, said once in the log.
//! - A failed append is cut back to the file's last whole block and
//!   retried like a failed insert (the chunk waits, then spools).
//! - At start, a `.open` file left by a crash is cut to its whole blocks
//!   or frames (`columns::whole_blocks_len`, `whole_zstd_frames_len`) and
//!   closed.
//! - Files whose minute is older than `store.segments_hours` are deleted
//!   (checked once a minute).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use weir_core::columns::{whole_blocks_len, whole_zstd_frames_len, MODERN};
use weir_core::config::SegmentsCompression;
use weir_core::schema::Schema;

const PREFIX: &str = "flows-";
/// A closed file's suffix, plain or compressed.
const PLAIN: &str = ".native";
const ZSTD: &str = ".native.zst";
/// Added to the closed name while the file is written.
const OPEN: &str = ".open";

/// The zstd level the shards and the writer compress at: the fastest of
/// the regular levels (perf/RESULTS.md compares it with the others).
const ZSTD_LEVEL: i32 = 1;

/// Direct writes are aligned to this in memory, in file offset and in
/// length: the page size, which every block device's logical block
/// size divides.
const ALIGN: usize = 4096;

/// The staging buffer's size: the most one write takes.
const STAGE_BYTES: usize = 4 << 20;

/// The segment files of one writer.
pub struct Segments {
    dir: PathBuf,
    keep_s: u64,
    /// Whether files are opened for direct writes.
    direct: bool,
    /// Compresses the plain blocks that come through `append` (zstd
    /// files), into `frame`.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    frame: Vec<u8>,
    open: Option<Open>,
    /// Bytes on their way to the open file.
    stage: Stage,
    /// The minute expiry last ran in.
    expired_at: u64,
}

/// The file being written.
struct Open {
    minute: u64,
    path: PathBuf,
    file: File,
    /// Whether `file` takes direct writes.
    direct: bool,
    /// Bytes of whole blocks in it.
    len: u64,
    /// Where the staged bytes go: `len` rounded down to `ALIGN` (the
    /// stage holds the last partial page's bytes between appends).
    staged_at: u64,
}

/// Aligned memory the blocks are copied into, and written from.
struct Stage {
    buf: Vec<u8>,
    /// Where the aligned `STAGE_BYTES` of `buf` start.
    start: usize,
    /// Bytes staged.
    len: usize,
}

impl Stage {
    fn new() -> Stage {
        let buf = vec![0u8; STAGE_BYTES + ALIGN];
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        Stage { buf, start, len: 0 }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + STAGE_BYTES]
    }
}

/// What an append did besides appending.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Files of past minutes deleted.
    pub expired: u64,
    /// Bytes written to the file (compressed, for compressed files).
    pub written: u64,
}

impl Segments {
    /// The segments in `dir` (made if missing), kept `hours`; a file a
    /// crash left open is cut to its whole blocks and closed.
    pub fn open(dir: &Path, hours: u32, compression: SegmentsCompression) -> Result<Segments, String> {
        Segments::open_with(dir, hours, compression, true)
    }

    /// `open`, with direct writes or not.
    fn open_with(dir: &Path, hours: u32, compression: SegmentsCompression, direct: bool) -> Result<Segments, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let listing = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in listing.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(closed) = name.strip_suffix(OPEN).filter(|c| c.starts_with(PREFIX)) else { continue };
            let compressed = closed.ends_with(ZSTD);
            if !compressed && !closed.ends_with(PLAIN) {
                continue;
            }
            let recovered = (|| -> std::io::Result<u64> {
                let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
                let whole = if compressed { whole_zstd_frames_len(&mut file)? } else { whole_blocks_len(&mut file)? };
                file.set_len(whole)?;
                fs::rename(&path, dir.join(closed))?;
                Ok(whole)
            })();
            match recovered {
                Ok(bytes) => {
                    tracing::info!(
                        "store: segment {name} closed after a stop ({bytes} bytes of whole blocks or frames)"
                    )
                }
                Err(e) => return Err(format!("cannot recover segment {}: {e}", path.display())),
            }
        }
        let compressor = match compression {
            SegmentsCompression::None => None,
            SegmentsCompression::Zstd => Some(compressor().map_err(|e| format!("zstd: {e}"))?),
        };
        Ok(Segments {
            dir: dir.to_path_buf(),
            keep_s: u64::from(hours) * 3600,
            direct,
            compressor,
            frame: Vec::new(),
            open: None,
            stage: Stage::new(),
            expired_at: 0,
        })
    }

    /// Appends `blocks` (whole Native blocks) to the file of `now_s`'s
    /// minute, compressed into one frame if the files are; on failure the
    /// file keeps only its whole blocks (frames).
    pub fn append(&mut self, blocks: &[u8], now_s: u64) -> Result<Appended, String> {
        let Some(compressor) = &mut self.compressor else { return self.write(blocks, now_s) };
        let mut frame = std::mem::take(&mut self.frame);
        let compressed = compress(compressor, blocks, &mut frame).map_err(|e| format!("zstd: {e}"));
        let appended = compressed.and_then(|_| self.write(&frame, now_s));
        self.frame = frame;
        appended
    }

    /// Whether the files hold zstd frames (`append_frame` then takes a
    /// shard's).
    pub fn compressed(&self) -> bool {
        self.compressor.is_some()
    }

    /// Appends `frame` (whole Native blocks compressed into one zstd frame,
    /// by a shard) to a compressed file of `now_s`'s minute.
    pub fn append_frame(&mut self, frame: &[u8], now_s: u64) -> Result<Appended, String> {
        debug_assert!(self.compressed(), "a frame for plain segment files");
        self.write(frame, now_s)
    }

    /// Appends `bytes` as they are.
    fn write(&mut self, bytes: &[u8], now_s: u64) -> Result<Appended, String> {
        let minute = now_s - now_s % 60;
        if self.open.as_ref().is_some_and(|o| o.minute != minute) {
            self.close()?;
        }
        if self.open.is_none() {
            self.open = Some(self.create(minute)?);
        }
        let open = self.open.as_mut().expect("opened above");
        // The last partial page's bytes, staged: a failed append puts them back.
        let kept = self.stage.len;
        let mut page = [0u8; ALIGN];
        page[..kept].copy_from_slice(&self.stage.bytes()[..kept]);
        if let Err(e) = open.write(&mut self.stage, bytes) {
            // A part of the chunk may be in the file: cut it off, so that
            // the retry does not follow half a block.
            let cut = open.file.set_len(open.len);
            self.stage.bytes()[..kept].copy_from_slice(&page[..kept]);
            self.stage.len = kept;
            return Err(format!("cannot append to {}: {e} (cut back: {cut:?})", open.path.display()));
        }
        if self.direct && !open.direct {
            self.direct = false;
            tracing::warn!(
                "store: {} takes no direct writes (O_DIRECT): segments go through the page cache",
                self.dir.display()
            );
        }
        let mut done = Appended { written: bytes.len() as u64, ..Appended::default() };
        if minute != self.expired_at {
            self.expired_at = minute;
            done.expired = self.expire(now_s);
        }
        Ok(done)
    }

    /// Closes the file being written once `now_s` is past its minute.
    pub fn close_if_past(&mut self, now_s: u64) -> Result<(), String> {
        match &self.open {
            Some(o) if now_s >= o.minute + 60 => self.close(),
            _ => Ok(()),
        }
    }

    /// Closes the file being written (the view reads it from now on).
    pub fn close(&mut self) -> Result<(), String> {
        let Some(open) = self.open.take() else { return Ok(()) };
        // Its bytes are in the file: the stage held their copy.
        self.stage.len = 0;
        drop(open.file);
        let closed = open.path.with_extension("");
        fs::rename(&open.path, &closed).map_err(|e| format!("cannot close segment {}: {e}", open.path.display()))
    }

    fn create(&self, minute: u64) -> Result<Open, String> {
        for n in 0..1000 {
            let stem = format!("{PREFIX}{minute}-{n}");
            let suffix = if self.compressed() { ZSTD } else { PLAIN };
            let path = self.dir.join(format!("{stem}{suffix}{OPEN}"));
            if [PLAIN, ZSTD].iter().any(|suffix| self.dir.join(format!("{stem}{suffix}")).exists()) {
                continue;
            }
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            if self.direct {
                options.custom_flags(libc::O_DIRECT);
            }
            let (file, direct) = match options.open(&path) {
                Ok(file) => (file, self.direct),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // A filesystem without direct writes may have made the
                // file before refusing them.
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    match OpenOptions::new().write(true).create(true).truncate(true).open(&path) {
                        Ok(file) => (file, false),
                        Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
                    }
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            };
            return Ok(Open { minute, path, file, direct, len: 0, staged_at: 0 });
        }
        Err(format!("1000 segment files for minute {minute} in {}", self.dir.display()))
    }

    /// Deletes the closed files whose minute ended `keep_s` before `now_s`;
    /// how many.
    fn expire(&self, now_s: u64) -> u64 {
        let Ok(listing) = fs::read_dir(&self.dir) else { return 0 };
        let mut deleted = 0;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(minute) = minute_of(&name) else { continue };
            if minute + 60 + self.keep_s <= now_s && fs::remove_file(entry.path()).is_ok() {
                deleted += 1;
            }
        }
        deleted
    }
}

impl Open {
    /// Appends `blocks` through `stage`; on failure, `self` is unchanged
    /// and the file may hold part of them past `len`.
    fn write(&mut self, stage: &mut Stage, blocks: &[u8]) -> io::Result<()> {
        let mut at = self.staged_at;
        let mut rest = blocks;
        while !rest.is_empty() {
            let n = (STAGE_BYTES - stage.len).min(rest.len());
            let from = stage.len;
            stage.bytes()[from..from + n].copy_from_slice(&rest[..n]);
            stage.len += n;
            rest = &rest[n..];
            if stage.len == STAGE_BYTES {
                self.write_at(&stage.bytes()[..STAGE_BYTES], at)?;
                at += STAGE_BYTES as u64;
                stage.len = 0;
            }
        }
        // The last partial page: written padded to a whole one, the padding
        // then cut off, so that the file ends at its last whole block.
        let staged = stage.len;
        let padded = staged.next_multiple_of(ALIGN);
        stage.bytes()[staged..padded].fill(0);
        if padded > 0 {
            self.write_at(&stage.bytes()[..padded], at)?;
        }
        let len = at + staged as u64;
        if padded != staged {
            self.file.set_len(len)?;
        }
        // The partial page stays staged, to be written whole next time.
        let whole = staged / ALIGN * ALIGN;
        stage.bytes().copy_within(whole..staged, 0);
        stage.len = staged - whole;
        self.staged_at = at + whole as u64;
        self.len = len;
        Ok(())
    }

    /// Writes `bytes` at `at`; a device that refuses a direct write gets
    /// the file reopened for buffered ones.
    fn write_at(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        match self.file.write_all_at(bytes, at) {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.file = OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                self.file.write_all_at(bytes, at)
            }
            done => done,
        }
    }
}

/// The compressor of compressed segment files (the shards keep one each).
pub fn compressor() -> io::Result<zstd::bulk::Compressor<'static>> {
    zstd::bulk::Compressor::new(ZSTD_LEVEL)
}

/// `blocks` as one zstd frame, in `frame` (cleared first).
pub fn compress(
    compressor: &mut zstd::bulk::Compressor<'static>,
    blocks: &[u8],
    frame: &mut Vec<u8>,
) -> io::Result<()> {
    frame.clear();
    frame.reserve(zstd::zstd_safe::compress_bound(blocks.len()));
    compressor.compress_to_buffer(blocks, frame).map(drop)
}

/// The plain bytes a frame made by `compress` holds, from its header (0 if
/// it does not say).
pub fn plain_len(frame: &[u8]) -> usize {
    zstd::zstd_safe::get_frame_content_size(frame).ok().flatten().unwrap_or(0) as usize
}

/// A frame made by `compress`, decompressed into `plain` (cleared).
pub fn decompress(frame: &[u8], plain: &mut Vec<u8>) -> io::Result<()> {
    plain.clear();
    plain.reserve(plain_len(frame));
    zstd::bulk::Decompressor::new()?.decompress_to_buffer(frame, plain).map(drop)
}

/// The minute a closed segment file's name says.
fn minute_of(name: &str) -> Option<u64> {
    let named = name.strip_prefix(PREFIX)?;
    let stem = named.strip_suffix(ZSTD).or_else(|| named.strip_suffix(PLAIN))?;
    stem.split('-').next()?.parse().ok()
}

/// The view over the closed segment files of `dir`, with `schema`'s
/// stored columns and its metadata columns read from the records (as the
/// raw table's aliases do).
pub fn view_sql(schema: &Schema, dir: &Path) -> String {
    let structure: Vec<String> =
        schema.stored_columns().map(|c| format!("{} {}", c.name, MODERN.type_name(c.kind))).collect();
    let metadata: String = schema
        .columns
        .iter()
        .filter_map(|c| schema.metadata_expression(c).map(|e| format!("{e} AS {}, ", c.name)))
        .collect();
    // Both kinds of closed file: a change of compression keeps the older
    // files in the view (the engine decompresses by each file's suffix).
    let glob = dir.join(format!("{PREFIX}*.{{native,native.zst}}"));
    // SegmentMinute, from the file's name: a condition on it skips the
    // other files unread (the engine filters files on `_file` first).
    format!(
        "CREATE OR REPLACE VIEW {database}.flows_segments AS SELECT *, {metadata}\
         toDateTime(toUInt32OrZero(splitByChar('-', _file)[2]), 'UTC') AS SegmentMinute \
         FROM file({}, 'Native', {})",
        quote(&glob.to_string_lossy()),
        quote(&structure.join(", ")),
        database = schema.database,
    )
}

/// A ClickHouse string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use weir_core::columns::whole_zstd_frames_len;
    use weir_core::columns::Columns;
    use weir_core::config::StoreConfig;
    use weir_core::schema::{stored_columns, ServerVersion};
    use weir_core::FlowRecord;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-segments-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn block(rows: u64) -> Vec<u8> {
        let layout = stored_columns(&StoreConfig::default().schema_settings());
        let mut c = Columns::new(&layout, 4);
        for i in 0..rows {
            let mut f = FlowRecord::default();
            f.set_bytes(i);
            c.push(&f);
        }
        let mut out = Vec::new();
        c.write_block(&MODERN, &mut out);
        out
    }

    fn names(d: &Path) -> Vec<String> {
        let mut n: Vec<String> =
            fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        n.sort();
        n
    }

    #[test]
    fn a_file_per_minute_closed_when_the_minute_ends_and_deleted_when_old() {
        let d = dir("minutes");
        let mut s = Segments::open(&d, 1, SegmentsCompression::None).unwrap();
        let (a, b) = (block(2), block(3));
        s.append(&a, 6_000).unwrap();
        s.append(&b, 6_059).unwrap();
        assert_eq!(names(&d), ["flows-6000-0.native.open"]);
        s.append(&a, 6_060).unwrap();
        assert_eq!(names(&d), ["flows-6000-0.native", "flows-6060-0.native.open"]);
        assert_eq!(fs::read(d.join("flows-6000-0.native")).unwrap(), [a.clone(), b].concat());
        s.close().unwrap();
        // A restart in the same minute starts a second file.
        let mut s = Segments::open(&d, 1, SegmentsCompression::None).unwrap();
        s.append(&a, 6_061).unwrap();
        assert!(names(&d).contains(&"flows-6060-1.native.open".to_string()));
        // An hour after the first minute ended, its file goes.
        let done = s.append(&a, 6_060 + 3_600).unwrap();
        assert_eq!(done.expired, 1);
        assert_eq!(names(&d), ["flows-6060-0.native", "flows-6060-1.native", "flows-9660-0.native.open"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn every_append_leaves_the_file_its_whole_blocks_direct_or_not() {
        for direct in [true, false] {
            let d = dir(&format!("appends-{direct}"));
            let mut s = Segments::open_with(&d, 1, SegmentsCompression::None, direct).unwrap();
            // Small chunks that end mid-page, and one larger than the stage.
            let (small, large) = (block(3), block(40_000));
            assert!(large.len() > STAGE_BYTES && small.len() % ALIGN != 0, "{} {}", large.len(), small.len());
            let mut want = Vec::new();
            for chunk in [&small, &small, &large, &small, &large, &large, &small] {
                s.append(chunk, 600).unwrap();
                want.extend_from_slice(chunk);
                let open = d.join("flows-600-0.native.open");
                assert_eq!(fs::read(&open).unwrap(), want, "direct {direct}, after {} bytes", want.len());
            }
            assert_eq!(s.open.as_ref().map(|o| o.direct), Some(direct));
            s.close().unwrap();
            assert_eq!(fs::read(d.join("flows-600-0.native")).unwrap(), want);
            // The next file starts from an empty stage.
            s.append(&small, 660).unwrap();
            assert_eq!(fs::read(d.join("flows-660-0.native.open")).unwrap(), small);
            let _ = fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn compressed_files_hold_a_frame_per_append_and_decompress_to_the_blocks() {
        let d = dir("zstd");
        let mut s = Segments::open(&d, 1, SegmentsCompression::Zstd).unwrap();
        assert!(s.compressed());
        let (small, large) = (block(3), block(40_000));
        // A shard's frame, and plain blocks the writer compresses.
        let mut frame = Vec::new();
        compress(&mut compressor().unwrap(), &large, &mut frame).unwrap();
        assert!(frame.len() * 4 < large.len(), "{} of {}", frame.len(), large.len());
        // What the writer does with a frame a failed append leaves it.
        let mut plain = vec![7; 3];
        assert_eq!(plain_len(&frame), large.len());
        decompress(&frame, &mut plain).unwrap();
        assert_eq!(plain, large);
        assert!(decompress(&frame[..frame.len() - 1], &mut plain).is_err());
        s.append_frame(&frame, 600).unwrap();
        s.append(&small, 601).unwrap();
        s.append_frame(&frame, 602).unwrap();
        let open = fs::read(d.join("flows-600-0.native.zst.open")).unwrap();
        assert_eq!(whole_zstd_frames_len(&mut std::io::Cursor::new(&open)).unwrap(), open.len() as u64);
        assert_eq!(zstd::stream::decode_all(&open[..]).unwrap(), [&large[..], &small, &large].concat());
        // The next minute closes it; a plain file of the same minute after
        // a change of setting takes the next number.
        s.append(&small, 660).unwrap();
        s.close().unwrap();
        assert_eq!(names(&d), ["flows-600-0.native.zst", "flows-660-0.native.zst"]);
        let mut plain = Segments::open(&d, 1, SegmentsCompression::None).unwrap();
        plain.append(&small, 661).unwrap();
        plain.close().unwrap();
        assert!(names(&d).contains(&"flows-660-1.native".to_string()), "{:?}", names(&d));
        // Both kinds expire, an hour after their minute ended.
        let done = plain.append(&small, 720 + 3_600).unwrap();
        assert_eq!(done.expired, 3);
        let _ = fs::remove_dir_all(&d);
    }

    /// A segment directory whose writer stopped without closing its file,
    /// after appending the returned block twice: the directory and the
    /// open file.
    fn left_open(name: &str, compression: SegmentsCompression) -> (PathBuf, PathBuf, Vec<u8>) {
        let d = dir(name);
        let mut s = Segments::open(&d, 1, compression).unwrap();
        let a = block(2);
        s.append(&a, 120).unwrap();
        s.append(&a, 121).unwrap();
        drop(s);
        let suffix = if compression == SegmentsCompression::Zstd { ZSTD } else { PLAIN };
        let path = d.join(format!("flows-120-0{suffix}{OPEN}"));
        (d, path, a)
    }

    #[test]
    fn a_compressed_file_left_open_by_a_crash_keeps_its_whole_frames() {
        let (d, path, a) = left_open("zstd-crash", SegmentsCompression::Zstd);
        let whole = fs::read(&path).unwrap();
        let frame = zstd::bulk::compress(&a, ZSTD_LEVEL).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame[..frame.len() - 3]).unwrap();
        drop(f);
        Segments::open(&d, 1, SegmentsCompression::None).unwrap();
        assert_eq!(names(&d), ["flows-120-0.native.zst"]);
        assert_eq!(fs::read(d.join("flows-120-0.native.zst")).unwrap(), whole);
        assert_eq!(zstd::stream::decode_all(&whole[..]).unwrap(), [&a[..], &a].concat());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_left_open_by_a_crash_keeps_its_whole_blocks() {
        let (d, path, a) = left_open("crash", SegmentsCompression::None);
        // Half a block after the two whole ones.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&a[..a.len() / 2]).unwrap();
        drop(f);
        Segments::open(&d, 1, SegmentsCompression::None).unwrap();
        assert_eq!(names(&d), ["flows-120-0.native"]);
        assert_eq!(fs::read(d.join("flows-120-0.native")).unwrap().len(), 2 * a.len());
        // A crash between a padded write and the cut: zeros after the blocks.
        let path = d.join("flows-180-0.native.open");
        fs::write(&path, [a.clone(), vec![0; ALIGN]].concat()).unwrap();
        Segments::open(&d, 1, SegmentsCompression::None).unwrap();
        assert_eq!(fs::read(d.join("flows-180-0.native")).unwrap(), a);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_view_names_the_closed_files_and_every_column() {
        let schema = Schema::new(&StoreConfig::default().schema_settings(), ServerVersion(26, 7));
        let sql = view_sql(&schema, Path::new("/data/it's"));
        assert!(sql.starts_with("CREATE OR REPLACE VIEW weir.flows_segments AS SELECT *, "), "{sql}");
        assert!(
            sql.contains(r"'/data/it\'s/flows-*.{native,native.zst}', 'Native', 'TimeReceived DateTime, "),
            "{sql}"
        );
        assert!(sql.contains("SrcAddr IPv6") && sql.contains("InIfRecord UInt64"), "{sql}");
        assert!(sql.contains("joinGet('weir.interface_records', 'IfName', InIfRecord) AS InIfName, "), "{sql}");
        assert!(!sql.contains("InIfName LowCardinality"), "not stored in a segment: {sql}");
    }
}
