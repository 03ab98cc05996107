//! What the process costs: a CPU profile on demand, the heap and /proc.
//!
//! - `cpu`: samples every thread's stack with SIGPROF (`pprof`) for a few
//!   seconds and returns a pprof protobuf (for `go tool pprof`) or a
//!   flamegraph SVG. The handler is installed with SA_RESTART; the shards'
//!   receive calls treat an interrupted call as an empty one.
//! - `memory`: glibc's heap statistics (mallinfo2, all arenas), the
//!   process's memory from /proc, and the buffers Weir sizes itself.
//! - `ProcessStats`: the `process_*` series of `/metrics`.
//!
//! chDB (the embedded store) allocates through its own allocator, so its
//! memory shows in the resident size but not in the heap figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest profile one request may ask for.
pub const SECONDS_MAX: u64 = 300;

/// Output of `cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuFormat {
    Pprof,
    Svg,
}

/// One profile at a time: SIGPROF and the sample store are process-wide.
static PROFILING: AtomicBool = AtomicBool::new(false);

/// Samples the whole process at `frequency` Hz for `seconds`.
pub fn cpu(seconds: u64, frequency: i32, format: CpuFormat) -> Result<Vec<u8>, CpuError> {
    if PROFILING.swap(true, Ordering::AcqRel) {
        return Err(CpuError::Busy);
    }
    let result = sample(seconds, frequency, format);
    PROFILING.store(false, Ordering::Release);
    result.map_err(CpuError::Failed)
}

#[derive(Debug)]
pub enum CpuError {
    /// Another profile is running.
    Busy,
    Failed(String),
}

fn sample(seconds: u64, frequency: i32, format: CpuFormat) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        // Unwinding through these from a signal handler can deadlock.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(seconds));
    let report = guard.report().build().map_err(|e| e.to_string())?;
    drop(guard);
    let mut out = Vec::new();
    match format {
        // An idle process takes no samples (SIGPROF counts CPU time), and a
        // flamegraph of nothing is no SVG at all.
        CpuFormat::Svg if report.data.is_empty() => out.extend_from_slice(EMPTY_SVG.as_bytes()),
        CpuFormat::Svg => report.flamegraph(&mut out).map_err(|e| e.to_string())?,
        CpuFormat::Pprof => {
            use pprof::protos::Message;
            let profile = report.pprof().map_err(|e| e.to_string())?;
            profile.encode(&mut out).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

const EMPTY_SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
    <text x=\"10\" y=\"25\">No samples: Weir used no CPU while it was profiled.</text></svg>\n";

/// glibc's view of the heap, over all arenas, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Heap {
    /// Handed out and not freed (small blocks plus mmap-ed large ones).
    pub allocated: u64,
    /// Free inside the arenas: kept for reuse, not returned to the kernel.
    pub free: u64,
    /// Obtained with brk/sbrk and per-thread arenas.
    pub arena: u64,
    /// Large blocks obtained with mmap directly.
    pub mmapped: u64,
    /// What malloc_trim could give back from the top of the main arena.
    pub releasable: u64,
}

/// Allocations of this many bytes or more are mapped on their own
/// (`tune_allocator`).
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Sets glibc's malloc for a long-lived collector, before any thread
/// starts: blocks of `MMAP_THRESHOLD` bytes or more (a batch's blocks, a
/// chunk of sums, a consolidation table) are mapped on their own, so a
/// freed one goes back to the kernel at once, and only its touched pages
/// are resident. By default glibc raises that threshold to the size of
/// each large block freed (up to 32 MiB): the blocks of sums, made every
/// ten seconds and freed once inserted, then came from the arenas, whose
/// freed pages stayed resident (a 60 s run at 1 M flows/s: anonymous
/// memory 521 MiB by default, 320 MiB so: perf/RESULTS.md, "Memory over a
/// quarter hour, again"). The embedded store is not affected: chDB has its
/// own allocator.
pub fn tune_allocator() {
    // SAFETY: mallopt only sets the allocator's parameters (it takes its
    // own lock); called at start, when only the main thread runs.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
}

pub fn heap() -> Heap {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    Heap {
        allocated: (m.uordblks + m.hblkhd) as u64,
        free: m.fordblks as u64,
        arena: m.arena as u64,
        mmapped: m.hblkhd as u64,
        releasable: m.keepcost as u64,
    }
}

/// glibc's per-arena report (malloc_info, XML).
pub fn malloc_info() -> String {
    let mut buffer: *mut libc::c_char = std::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: open_memstream owns the buffer until fclose, after which it
    // is ours to read and free; malloc_info writes to the stream only.
    unsafe {
        let stream = libc::open_memstream(&mut buffer, &mut size);
        if stream.is_null() {
            return String::new();
        }
        libc::malloc_info(0, stream);
        libc::fclose(stream);
        let text = String::from_utf8_lossy(std::slice::from_raw_parts(buffer as *const u8, size)).into_owned();
        libc::free(buffer.cast());
        text
    }
}

/// The figures behind the usual `process_*` series.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub peak_resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads /proc/self; a field that cannot be read is 0.
    pub fn read() -> ProcessStats {
        let mut p = ProcessStats::default();
        // SAFETY: plain libc calls.
        let (tick, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let (tick, page) = (tick.max(1) as f64, page.max(1) as u64);
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // The command name may hold spaces: fields count from its ')'.
            let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
            // `fields[0]` is field 3 (state) of proc(5).
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            p.cpu_seconds = (field(14) + field(15)) as f64 / tick;
            p.threads = field(20);
            p.start_time_seconds = boot_time() + field(22) as f64 / tick;
            p.virtual_bytes = field(23);
            p.resident_bytes = field(24) * page;
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            p.peak_resident_bytes = status_kib(&status, "VmHWM:") * 1024;
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        p
    }
}

fn boot_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()).unwrap_or(0.0)
}

/// A `NAME:  123 kB` line of /proc/self/status or smaps_rollup.
pub(crate) fn status_kib(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// `/debug/memory`: one JSON object; `weir` holds what the features
/// registered with the exposition say of their buffers.
pub fn memory(weir: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let p = ProcessStats::read();
    let h = heap();
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let kib = |name| status_kib(&rollup, name) * 1024;
    serde_json::json!({
        "process": {
            "resident_bytes": p.resident_bytes,
            "peak_resident_bytes": p.peak_resident_bytes,
            "virtual_bytes": p.virtual_bytes,
            "anonymous_bytes": kib("Anonymous:"),
            "file_backed_bytes": kib("Rss:").saturating_sub(kib("Anonymous:")),
            "threads": p.threads,
        },
        "heap": {
            "allocated_bytes": h.allocated,
            "free_in_arenas_bytes": h.free,
            "arena_bytes": h.arena,
            "mmapped_bytes": h.mmapped,
            "releasable_bytes": h.releasable,
        },
        "weir": weir,
        "note": "heap: glibc malloc over all arenas: Weir's own allocations (the embedded store, chDB, has its own allocator: its memory shows in process only); process: from /proc/self.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_come_from_proc() {
        let p = ProcessStats::read();
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.threads >= 1 && p.open_fds >= 3);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds > now - 86_400.0 * 365.0 && p.start_time_seconds <= now + 5.0);
    }

    #[test]
    fn the_heap_sees_an_allocation() {
        let before = heap().allocated;
        let block = vec![1u8; 8 << 20];
        assert!(heap().allocated >= before + (8 << 20), "{:?}", heap());
        drop(block);
        assert!(malloc_info().starts_with("<malloc"));
    }

    /// glibc's chunk header: the word before a block holds its size, bit 1
    /// set when the block was mapped on its own.
    fn mapped_on_its_own(block: &[u8]) -> bool {
        // SAFETY: reads the allocator's header word just before a live block.
        let size = unsafe { *(block.as_ptr() as *const usize).sub(1) };
        size & 2 != 0
    }

    #[test]
    fn large_blocks_stay_mapped_on_their_own_after_one_is_freed() {
        tune_allocator();
        let first = vec![1u8; 4 << 20];
        assert!(mapped_on_its_own(&first));
        drop(first);
        // By glibc's default, freeing it raised the threshold past 4 MiB:
        // the next such block would come from an arena.
        let second = vec![1u8; 4 << 20];
        assert!(mapped_on_its_own(&second), "freed pages would stay resident in an arena");
        let small = vec![1u8; 64 << 10];
        assert!(!mapped_on_its_own(&small));
    }

    /// Keeps a CPU busy until dropped, in a function the profile can name.
    struct Busy(std::sync::Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

    #[inline(never)]
    fn spin_for_the_profiler(stop: &AtomicBool) {
        let mut x = 1u64;
        while !stop.load(Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    fn busy() -> Busy {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        Busy(stop, Some(std::thread::spawn(move || spin_for_the_profiler(&s))))
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
            let _ = self.1.take().map(|h| h.join());
        }
    }

    #[test]
    fn profiles_name_the_hot_function_and_do_not_overlap() {
        let _busy = busy();
        let first = std::thread::spawn(|| cpu(1, 199, CpuFormat::Pprof));
        std::thread::sleep(Duration::from_millis(200));
        assert!(matches!(cpu(1, 99, CpuFormat::Svg), Err(CpuError::Busy)));
        let bytes = first.join().unwrap().unwrap();
        let profile = <pprof::protos::Profile as pprof::protos::Message>::decode(&bytes[..]).unwrap();
        assert!(!profile.sample.is_empty());
        assert!(profile.string_table.iter().any(|s| s.contains("spin_for_the_profiler")));
        let svg = String::from_utf8(cpu(1, 99, CpuFormat::Svg).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("spin_for_the_profiler"));
    }
}
