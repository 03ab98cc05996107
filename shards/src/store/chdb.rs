//! The embedded ClickHouse engine: chDB's `libchdb.so`, loaded at run time
//! with `dlopen`, so a `weir` built without it still runs with a remote
//! store, and a missing library is a clear error rather than a link failure.
//!
//! Only the calls Weir uses are declared, from chDB's public C API (v26):
//! `chdb_connect` (returns a pointer to the connection handle),
//! `chdb_query_n` (length-delimited), the result accessors,
//! the streaming insert (`chdb_stream_insert_n` with the statement and the
//! format apart, `chdb_stream_append`, `chdb_stream_done`,
//! `chdb_stream_insert_error`, `chdb_destroy_insert_stream`),
//! `chdb_destroy_query_result`, `chdb_close_conn`,
//! `chdb_set_signal_handlers_enabled` (so SIGTERM/SIGHUP stay Weir's) and
//! `chdb_classify_query_n` (the engine's parser says whether a statement
//! only reads: the read-only `/query`). The store tests check each
//! signature against the library's behaviour.
//!
//! chDB runs one storage path per process and locks it: a second process on
//! the same path fails to connect (`weir query` then asks the running
//! collector over HTTP).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::size_of;
use std::path::Path;

type Connect = unsafe extern "C" fn(argc: c_int, argv: *mut *mut c_char) -> *mut *mut c_void;
type CloseConn = unsafe extern "C" fn(conn: *mut *mut c_void);
type QueryN = unsafe extern "C" fn(
    conn: *mut c_void,
    query: *const c_char,
    query_len: usize,
    format: *const c_char,
    format_len: usize,
) -> *mut c_void;
type ResultBuffer = unsafe extern "C" fn(result: *mut c_void) -> *mut c_char;
type ResultLength = unsafe extern "C" fn(result: *mut c_void) -> usize;
type ResultError = unsafe extern "C" fn(result: *mut c_void) -> *const c_char;
type DestroyResult = unsafe extern "C" fn(result: *mut c_void);
type SetSignalHandlers = unsafe extern "C" fn(enabled: c_int);
/// The same C signature as `chdb_query_n`: statement and format, each with its length.
type StreamInsertN = QueryN;
type StreamAppend = unsafe extern "C" fn(stream: *mut c_void, data: *const c_void, len: usize) -> c_int;
type StreamDone = unsafe extern "C" fn(stream: *mut c_void) -> *mut c_void;
type StreamInsertError = unsafe extern "C" fn(stream: *mut c_void) -> *const c_char;
type DestroyInsertStream = unsafe extern "C" fn(stream: *mut c_void);
type ClassifyQueryN = unsafe extern "C" fn(
    conn: *mut c_void,
    sql: *const c_char,
    sql_len: usize,
    target_database: *const c_char,
    target_database_len: usize,
    out: *mut QueryAnalysis,
) -> c_int;

/// chDB's `chdb_query_analysis_v1`: four `uint32_t`, the first its size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct QueryAnalysis {
    struct_size: u32,
    statement_count: u32,
    flags: u32,
    query_class: u32,
}

/// What a statement does, as chDB's `chdb_query_class` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementClass {
    /// Reads only (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN).
    ReadOnly,
    /// Changes data or schema (INSERT, ALTER, CREATE, DROP, TRUNCATE...).
    Mutating,
    /// Changes state outside the database (global mutations).
    MutatingGlobal,
    /// Changes the session or the engine (SET, USE, SYSTEM, KILL, INTO OUTFILE).
    Control,
    Unknown,
}

impl StatementClass {
    fn of(class: u32) -> StatementClass {
        match class {
            0 => StatementClass::ReadOnly,
            1 => StatementClass::Mutating,
            2 => StatementClass::MutatingGlobal,
            3 => StatementClass::Control,
            _ => StatementClass::Unknown,
        }
    }
}

struct Api {
    connect: Connect,
    close_conn: CloseConn,
    query_n: QueryN,
    result_buffer: ResultBuffer,
    result_length: ResultLength,
    result_error: ResultError,
    destroy_result: DestroyResult,
    set_signal_handlers: SetSignalHandlers,
    stream_insert_n: StreamInsertN,
    stream_append: StreamAppend,
    stream_done: StreamDone,
    stream_insert_error: StreamInsertError,
    destroy_insert_stream: DestroyInsertStream,
    classify_query_n: ClassifyQueryN,
}

/// One open chDB database. Owned by one thread (the store writer, or the
/// `weir query`/`weir migrate` process); queries run one at a time.
pub struct Chdb {
    api: Api,
    conn: *mut *mut c_void,
}

// The connection is used by one thread at a time (it moves into the writer).
unsafe impl Send for Chdb {}

/// Loads `library` and finds every call: a start-up check, so a missing
/// or wrong library stops `weir run` at once instead of spooling forever.
pub fn check_library(library: &Path) -> Result<(), String> {
    load(library).map(drop)
}

impl Chdb {
    /// Loads `library` and opens the database at `path` (created if missing),
    /// the engine started with `settings` (server settings, by name); each
    /// is then read back from `system.server_settings`, since the engine
    /// ignores a name it does not know and some it does not apply.
    pub fn open(library: &Path, path: &Path, settings: &[(String, u64)]) -> Result<Chdb, String> {
        let api = load(library)?;
        std::fs::create_dir_all(path).map_err(|e| format!("store.embedded.path {}: {e}", path.display()))?;
        // Before the engine starts: its own handlers would take SIGTERM and
        // SIGHUP from Weir, and its crash handlers sleep before re-raising.
        unsafe { (api.set_signal_handlers)(0) };
        let mut args = vec![CString::new("weir").unwrap(), arg(&format!("--path={}", path.display()))?];
        if !settings.is_empty() {
            // After `--`: configuration, not query settings.
            args.push(arg("--")?);
            for (name, value) in settings {
                args.push(arg(&format!("--{name}={value}"))?);
            }
        }
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
        let conn = unsafe { (api.connect)(argv.len() as c_int, argv.as_mut_ptr()) };
        if conn.is_null() || unsafe { (*conn).is_null() } {
            return Err(format!(
                "chDB could not open {} (is another weir using it? chDB locks its path)",
                path.display()
            ));
        }
        let mut chdb = Chdb { api, conn };
        chdb.check_settings(settings)?;
        Ok(chdb)
    }

    fn check_settings(&mut self, settings: &[(String, u64)]) -> Result<(), String> {
        if settings.is_empty() {
            return Ok(());
        }
        // Names are checked by the configuration: lower-case letters, digits, `_`.
        let names: Vec<String> = settings.iter().map(|(n, _)| format!("'{n}'")).collect();
        let sql = format!("SELECT name, value FROM system.server_settings WHERE name IN ({})", names.join(","));
        let out = String::from_utf8_lossy(&self.query(sql.as_bytes(), "TSV")?).into_owned();
        let read: std::collections::HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('\t')).collect();
        for (name, value) in settings {
            match read.get(name.as_str()) {
                None => return Err(format!("store.embedded.server_settings.{name}: the engine has no such setting")),
                Some(v) if v.parse::<u64>().ok() != Some(*value) => {
                    return Err(format!(
                    "store.embedded.server_settings.{name}: the engine does not apply it here (set {value}, reads {v})"
                ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Runs `query` (may carry binary data); returns the output in `format`.
    pub fn query(&mut self, query: &[u8], format: &str) -> Result<Vec<u8>, String> {
        let result = unsafe {
            (self.api.query_n)(
                *self.conn,
                query.as_ptr() as *const c_char,
                query.len(),
                format.as_ptr() as *const c_char,
                format.len(),
            )
        };
        if result.is_null() {
            return Err("chDB returned no result".into());
        }
        let outcome = unsafe {
            match c_message((self.api.result_error)(result)) {
                Some(error) => Err(error),
                None => {
                    let len = (self.api.result_length)(result);
                    let buf = (self.api.result_buffer)(result);
                    if len == 0 || buf.is_null() {
                        Ok(Vec::new())
                    } else {
                        Ok(std::slice::from_raw_parts(buf as *const u8, len).to_vec())
                    }
                }
            }
        };
        unsafe { (self.api.destroy_result)(result) };
        outcome
    }

    /// How many statements `sql` holds and what the first does, by the
    /// engine's own parser; nothing runs.
    pub fn classify(&mut self, sql: &str) -> Result<(u32, StatementClass), String> {
        let mut out = QueryAnalysis { struct_size: size_of::<QueryAnalysis>() as u32, ..Default::default() };
        // SAFETY: `sql` is valid for its length (the call is length-based);
        // no target database; `out` is live and its size is set as asked.
        let state = unsafe {
            (self.api.classify_query_n)(
                *self.conn,
                sql.as_ptr() as *const c_char,
                sql.len(),
                std::ptr::null(),
                0,
                &mut out,
            )
        };
        if state != 0 {
            return Err("chDB could not classify the statement".into());
        }
        Ok((out.statement_count, StatementClass::of(out.query_class)))
    }

    /// Inserts `rows` in `format` (Native blocks) with `insert` (`INSERT
    /// INTO t (cols)`, without FORMAT). Binary data must not ride inline in a query: the
    /// statement parser ends inline data early (at a blank line), so bytes
    /// such as `0a 0a` inside an address cut a batch short.
    pub fn insert(&mut self, insert: &str, format: &str, rows: &[u8]) -> Result<(), String> {
        let api = &self.api;
        // SAFETY: pointers and lengths describe live buffers; the stream
        // handle is never null (chDB reports init failures through it).
        unsafe {
            let stream = (api.stream_insert_n)(
                *self.conn,
                insert.as_ptr() as *const c_char,
                insert.len(),
                format.as_ptr() as *const c_char,
                format.len(),
            );
            if stream.is_null() {
                return Err("chDB returned no insert stream".into());
            }
            if let Some(error) = c_message((api.stream_insert_error)(stream)) {
                (api.destroy_insert_stream)(stream);
                return Err(error);
            }
            // In pieces: chDB copies each append into its queue, so one
            // append of a whole chunk held a second copy of it.
            let mut appended = 0;
            for piece in rows.chunks(APPEND_BYTES) {
                appended = (api.stream_append)(stream, piece.as_ptr() as *const c_void, piece.len());
                if appended != 0 {
                    break;
                }
            }
            // Done also reports what went wrong in the append.
            let result = (api.stream_done)(stream);
            let mut outcome = if appended == 0 { Ok(()) } else { Err(format!("append failed ({appended})")) };
            if !result.is_null() {
                if let Some(error) = c_message((api.result_error)(result)) {
                    outcome = Err(error);
                }
                (api.destroy_result)(result);
            }
            (api.destroy_insert_stream)(stream);
            outcome
        }
    }
}

/// Bytes per append to an insert stream.
const APPEND_BYTES: usize = 4 << 20;

impl Drop for Chdb {
    fn drop(&mut self) {
        // Closing the last connection shuts the engine down and flushes its parts.
        unsafe { (self.api.close_conn)(self.conn) };
    }
}

/// chDB's error text, when `message` points at one.
///
/// # Safety
/// `message` is null or a NUL-terminated string that outlives the call.
unsafe fn c_message(message: *const c_char) -> Option<String> {
    (!message.is_null()).then(|| unsafe { CStr::from_ptr(message) }.to_string_lossy().trim().to_string())
}

fn arg(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn load(library: &Path) -> Result<Api, String> {
    let name = arg(&library.to_string_lossy())?;
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        let why = unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy().into_owned();
        return Err(format!(
            "store.embedded.library {}: {why} (scripts/setup installs chDB's libchdb.so in /usr/local/lib)",
            library.display()
        ));
    }
    let symbol = |name: &str| -> Result<*mut c_void, String> {
        let c = arg(name)?;
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() {
            Err(format!("{} has no {name}: chDB 26.7 or later is needed", library.display()))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is cast to the signature of chDB's C API (v26);
    // the store tests call every one of them.
    unsafe {
        Ok(Api {
            connect: std::mem::transmute::<*mut c_void, Connect>(symbol("chdb_connect")?),
            close_conn: std::mem::transmute::<*mut c_void, CloseConn>(symbol("chdb_close_conn")?),
            query_n: std::mem::transmute::<*mut c_void, QueryN>(symbol("chdb_query_n")?),
            result_buffer: std::mem::transmute::<*mut c_void, ResultBuffer>(symbol("chdb_result_buffer")?),
            result_length: std::mem::transmute::<*mut c_void, ResultLength>(symbol("chdb_result_length")?),
            result_error: std::mem::transmute::<*mut c_void, ResultError>(symbol("chdb_result_error")?),
            destroy_result: std::mem::transmute::<*mut c_void, DestroyResult>(symbol("chdb_destroy_query_result")?),
            set_signal_handlers: std::mem::transmute::<*mut c_void, SetSignalHandlers>(symbol(
                "chdb_set_signal_handlers_enabled",
            )?),
            stream_insert_n: std::mem::transmute::<*mut c_void, StreamInsertN>(symbol("chdb_stream_insert_n")?),
            stream_append: std::mem::transmute::<*mut c_void, StreamAppend>(symbol("chdb_stream_append")?),
            stream_done: std::mem::transmute::<*mut c_void, StreamDone>(symbol("chdb_stream_done")?),
            stream_insert_error: std::mem::transmute::<*mut c_void, StreamInsertError>(symbol(
                "chdb_stream_insert_error",
            )?),
            destroy_insert_stream: std::mem::transmute::<*mut c_void, DestroyInsertStream>(symbol(
                "chdb_destroy_insert_stream",
            )?),
            classify_query_n: std::mem::transmute::<*mut c_void, ClassifyQueryN>(symbol("chdb_classify_query_n")?),
        })
    }
}

/// Gives back the library's pages that only the engine's start touched.
/// Opening chDB and migrating fault in about 180 MiB of its code and
/// read-only data, and the engine runs a fraction of that afterwards.
/// `MADV_PAGEOUT` on the library's read-only mappings reclaims those
/// clean file pages now, as the kernel would under memory pressure. The
/// code the engine still runs comes back on its first use: about 35 MiB
/// at 1 M flows/s (perf/RESULTS.md). Writable mappings (the library's
/// data) are left alone. Returns the bytes of the mappings advised: 0
/// where the library is not mapped, or on a kernel without `MADV_PAGEOUT`
/// (before 5.4).
pub fn page_out_library(library: &Path) -> usize {
    let Some(name) = library.file_name() else { return 0 };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return 0 };
    let mut advised = 0;
    for line in maps.lines() {
        let Some((start, end, writable, path)) = mapping(line) else { continue };
        if writable || Path::new(path).file_name() != Some(name) {
            continue;
        }
        // SAFETY: the range is one of this process's mappings, and
        // MADV_PAGEOUT changes no content: a clean file page is read again
        // from its file on its next use.
        if unsafe { libc::madvise(start as *mut c_void, end - start, libc::MADV_PAGEOUT) } == 0 {
            advised += end - start;
        }
    }
    advised
}

/// A `/proc/self/maps` line's start, end, whether it is writable, and its
/// path (empty for an anonymous mapping).
fn mapping(line: &str) -> Option<(usize, usize, bool, &str)> {
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let (start, end) = fields[0].split_once('-')?;
    let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
    (end > start).then_some((start, end, fields[1].contains('w'), rest.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_gives_its_range_permissions_and_path() {
        let line = "7f72b0000000-7f72b8000000 r-xp 00001000 fd:01 1234      /usr/lib/my lib.so";
        assert_eq!(mapping(line), Some((0x7f72b0000000, 0x7f72b8000000, false, "/usr/lib/my lib.so")));
        let anon = "7f72b0000000-7f72b0001000 rw-p 00000000 00:00 0 ";
        assert_eq!(mapping(anon), Some((0x7f72b0000000, 0x7f72b0001000, true, "")));
        assert_eq!(mapping("garbage"), None);
    }

    #[test]
    fn the_pages_of_a_mapped_library_are_given_back_and_come_back_on_use() {
        // The C library is mapped into every test process.
        let libc = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| mapping(l).map(|m| m.3.to_string()))
            .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
            .expect("the C library is mapped");
        assert!(page_out_library(Path::new(&libc)) > 0, "{libc}");
        // The process goes on: its calls into the C library (the reads
        // below) fault the pages back from the file.
        assert!(std::fs::read_to_string("/proc/self/status").unwrap().contains("RssFile"));
        assert_eq!(page_out_library(Path::new("not-mapped.so")), 0);
    }
}
