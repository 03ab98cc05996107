//! HAProxy's request counter (`%rt`), followed per process, to count the
//! lines that never arrived.
//!
//! HAProxy numbers requests as they start and logs them as they end, so
//! under concurrency lines come out of order: a number missing now is
//! usually a request still running. A missing number is therefore a
//! *hole* that waits `request_counter_wait_s` for its line, then settles:
//!
//! ```text
//! numbers seen   0 1 2 . 4 5 . . 8        high = 8, holes [3], [6..=7]
//! line 6 comes   0 1 2 . 4 5 6 . 8        holes [3], [7]
//! after the wait: 3 and 7 settle, each explained or lost
//! ```
//!
//! Some lines stand for a number they do not carry: HAProxy 2.6 logs a
//! request it could not parse (`<BADREQ>`, answered 400) with one number
//! and uses up the next one as well, and a line whose counter is `-` has
//! used one up without saying which. Each such line *explains* one hole
//! settling near it (within `EXPLAIN_SPAN` numbers) instead of it counting
//! as lost, so a steady stream of bad requests never looks like loss.
//!
//! A line whose number already settled (a request that ran longer than
//! the wait) or was already seen counts as late. A process is a (host,
//! procid) pair; a counter that goes back to 0, or back by more than
//! `RESTART_BACK`, is a new process under the same pid. Memory is
//! bounded: `MAX_PROCESSES` processes (the least recently heard is
//! settled and forgotten first), `MAX_HOLES` holes and `EXPLAIN_SPAN`
//! explanations per process (the oldest settle, or go, early).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

/// What the counter tracking learnt: numbers settled, lines judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Missing numbers settled with no line to explain them.
    pub lost: u64,
    /// Missing numbers settled that an unnumbered line explained.
    pub explained: u64,
    /// Lines whose number had settled already, or was seen already.
    pub late: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.lost += other.lost;
        self.explained += other.explained;
        self.late += other.late;
    }
}

/// Processes followed at most.
const MAX_PROCESSES: usize = 256;
/// Holes (ranges of missing numbers) per process at most.
const MAX_HOLES: usize = 4096;
/// How far (in numbers) an unnumbered line explains a hole; also how many
/// explanations a process keeps.
const EXPLAIN_SPAN: i64 = 4096;
/// A counter this far below the highest, and not a hole: a new process.
const RESTART_BACK: i64 = 1 << 20;

struct Process {
    /// The highest number seen.
    high: i64,
    /// Missing numbers below `high`: first → (last, when they went missing).
    holes: BTreeMap<i64, (i64, Instant)>,
    /// Numbers in `holes`.
    missing: u64,
    /// Unused explanations: the number each line was near (its own for a
    /// `<BADREQ>` line, the highest seen for a line without one).
    explanations: VecDeque<i64>,
    heard: Instant,
}

impl Process {
    fn new(high: i64, now: Instant) -> Process {
        Process { high, holes: BTreeMap::new(), missing: 0, explanations: VecDeque::new(), heard: now }
    }

    fn numbered(&mut self, n: i64, now: Instant) -> Tally {
        let mut tally = Tally::default();
        if n > self.high {
            if n > self.high + 1 {
                self.holes.insert(self.high + 1, (n - 1, now));
                self.missing += (n - 1 - self.high) as u64;
                if self.holes.len() > MAX_HOLES {
                    tally.add(self.settle_first());
                }
            }
            self.high = n;
            return tally;
        }
        let hole = self.holes.range(..=n).next_back().map(|(&first, &(last, since))| (first, last, since));
        match hole {
            Some((first, last, since)) if n <= last => {
                self.holes.remove(&first);
                if first < n {
                    self.holes.insert(first, (n - 1, since));
                }
                if n < last {
                    self.holes.insert(n + 1, (last, since));
                }
                self.missing -= 1;
            }
            _ if n == 0 || self.high - n > RESTART_BACK => {
                tally.add(self.settle_all());
                self.explanations.clear();
                self.high = n;
            }
            _ => tally.late = 1,
        }
        tally
    }

    fn explain(&mut self, near: i64) {
        if self.explanations.len() as i64 >= EXPLAIN_SPAN {
            self.explanations.pop_front();
        }
        self.explanations.push_back(near);
    }

    /// Settles the lowest hole, whatever its age.
    fn settle_first(&mut self) -> Tally {
        let Some((first, (last, _))) = self.holes.pop_first() else { return Tally::default() };
        self.missing -= (last - first + 1) as u64;
        let mut tally = Tally::default();
        let mut n = first;
        while n <= last {
            // Explanations too far below this number can explain no hole to come.
            while self.explanations.front().is_some_and(|&near| near.saturating_add(EXPLAIN_SPAN) < n) {
                self.explanations.pop_front();
            }
            match self.explanations.front() {
                Some(&near) if near - EXPLAIN_SPAN <= n => {
                    self.explanations.pop_front();
                    tally.explained += 1;
                    n += 1;
                }
                // Lost up to where the next explanation reaches.
                Some(&near) => {
                    let upto = (near - EXPLAIN_SPAN - 1).min(last);
                    tally.lost += (upto - n + 1) as u64;
                    n = upto + 1;
                }
                None => {
                    tally.lost += (last - n + 1) as u64;
                    break;
                }
            }
        }
        tally
    }

    fn settle_older_than(&mut self, deadline: Instant) -> Tally {
        let mut tally = Tally::default();
        while self.holes.first_key_value().is_some_and(|(_, &(_, since))| since <= deadline) {
            tally.add(self.settle_first());
        }
        // Explanations that no hole, open or to come, can use.
        let floor = self.holes.first_key_value().map_or(self.high.saturating_add(1), |(&first, _)| first);
        while self.explanations.front().is_some_and(|&near| near.saturating_add(EXPLAIN_SPAN) < floor) {
            self.explanations.pop_front();
        }
        tally
    }

    fn settle_all(&mut self) -> Tally {
        let mut tally = Tally::default();
        while !self.holes.is_empty() {
            tally.add(self.settle_first());
        }
        tally
    }
}

/// The request counters of the HAProxy processes sending lines, keyed by
/// a hash of (host, procid), so a line costs no allocation.
pub struct RequestCounters {
    processes: HashMap<u64, Process>,
    keys: RandomState,
    wait: Duration,
}

impl RequestCounters {
    /// Missing numbers wait `wait` for their line before they settle.
    pub fn new(wait: Duration) -> RequestCounters {
        RequestCounters { processes: HashMap::new(), keys: RandomState::new(), wait }
    }

    /// A line numbered `n`; `explains_one` when HAProxy used up another
    /// number for it (`<BADREQ>`). HAProxy's numbers are never negative:
    /// such a line is taken as unnumbered.
    pub fn numbered(&mut self, host: &str, procid: &str, n: i64, explains_one: bool, now: Instant) -> Tally {
        if n < 0 {
            self.unnumbered(host, procid, now);
            return Tally::default();
        }
        let (p, new, mut tally) = self.process(host, procid, n, now);
        if !new {
            tally.add(p.numbered(n, now));
        }
        if explains_one {
            p.explain(n);
        }
        tally
    }

    /// A line without a counter value: it explains one missing number.
    pub fn unnumbered(&mut self, host: &str, procid: &str, now: Instant) {
        if let Some(p) = self.processes.get_mut(&self.keys.hash_one((host, procid))) {
            p.heard = now;
            let near = p.high;
            p.explain(near);
        }
    }

    /// Settles the holes that waited long enough.
    pub fn settle(&mut self, now: Instant) -> Tally {
        let mut tally = Tally::default();
        let Some(deadline) = now.checked_sub(self.wait) else { return tally };
        for p in self.processes.values_mut() {
            tally.add(p.settle_older_than(deadline));
        }
        tally
    }

    /// Processes followed.
    pub fn processes(&self) -> usize {
        self.processes.len()
    }

    /// Numbers missing now, waiting for their line.
    pub fn missing(&self) -> u64 {
        self.processes.values().map(|p| p.missing).sum()
    }

    /// The process's entry, and whether this line starts it (a new
    /// process's first number sets its base). Forgetting the least
    /// recently heard process to make room settles its holes.
    fn process(&mut self, host: &str, procid: &str, n: i64, now: Instant) -> (&mut Process, bool, Tally) {
        let key = self.keys.hash_one((host, procid));
        let mut tally = Tally::default();
        let new = !self.processes.contains_key(&key);
        if new && self.processes.len() >= MAX_PROCESSES {
            let oldest = self.processes.iter().min_by_key(|(_, p)| p.heard).map(|(&k, _)| k);
            if let Some(mut p) = oldest.and_then(|k| self.processes.remove(&k)) {
                tally.add(p.settle_all());
            }
        }
        let p = self.processes.entry(key).or_insert_with(|| Process::new(n, now));
        p.heard = now;
        (p, new, tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn lost(n: u64) -> Tally {
        Tally { lost: n, ..Default::default() }
    }

    #[test]
    fn gaps_settle_as_lost_after_the_wait_per_process() {
        let t0 = Instant::now();
        let mut c = RequestCounters::new(WAIT);
        for n in [10, 11, 15] {
            assert_eq!(c.numbered("h", "1", n, false, t0), Tally::default(), "nothing settles before the wait");
        }
        assert_eq!(c.numbered("h", "2", 100, false, t0), Tally::default(), "another process starts at its first");
        assert_eq!(c.numbered("other", "1", 5, false, t0), Tally::default(), "another host");
        assert_eq!(c.missing(), 3);
        assert_eq!(c.settle(t0 + WAIT / 2), Tally::default());
        assert_eq!(c.settle(t0 + WAIT), lost(3), "12, 13, 14");
        assert_eq!(c.missing(), 0);
        assert_eq!(c.processes(), 3);
        assert_eq!(c.numbered("h", "1", 13, false, t0 + WAIT), Tally { late: 1, ..Default::default() });
        assert_eq!(c.numbered("h", "1", 15, false, t0 + WAIT), Tally { late: 1, ..Default::default() }, "a repeat");
    }

    #[test]
    fn lines_out_of_order_fill_their_holes() {
        let t0 = Instant::now();
        let mut c = RequestCounters::new(WAIT);
        // Requests 1..=9 end in another order than they started.
        for n in [1, 3, 2, 7, 5, 4, 9, 6] {
            c.numbered("h", "1", n, false, t0);
        }
        assert_eq!(c.missing(), 1, "8");
        c.numbered("h", "1", 8, false, t0 + WAIT / 2);
        assert_eq!(c.settle(t0 + WAIT * 2), Tally::default());
    }

    #[test]
    fn bad_requests_and_lines_without_a_number_explain_one_number_each() {
        let t0 = Instant::now();
        let mut c = RequestCounters::new(WAIT);
        c.numbered("h", "1", 0, false, t0);
        // As HAProxy 2.6 numbers them: `<BADREQ>` at 1 uses up 2 as well.
        c.numbered("h", "1", 1, true, t0);
        c.numbered("h", "1", 3, true, t0);
        c.numbered("h", "1", 5, false, t0);
        // A line whose counter is `-`, then a jump of one.
        c.unnumbered("h", "1", t0);
        c.numbered("h", "1", 7, false, t0);
        // And one real loss.
        c.numbered("h", "1", 9, false, t0);
        assert_eq!(c.settle(t0 + WAIT), Tally { lost: 1, explained: 3, late: 0 });
        // An explanation with no hole near it goes once the counter is past.
        c.numbered("h", "1", 10, true, t0);
        for n in 11..=12 + EXPLAIN_SPAN {
            c.numbered("h", "1", n, false, t0);
        }
        assert_eq!(c.settle(t0 + WAIT), Tally::default());
        c.numbered("h", "1", 14 + EXPLAIN_SPAN, false, t0);
        assert_eq!(c.settle(t0 + WAIT), lost(1));
        // One far above a long hole explains only its end.
        c.numbered("h", "1", 15 + 3 * EXPLAIN_SPAN, true, t0);
        let t = c.settle(t0 + WAIT);
        assert_eq!((t.explained, t.lost), (1, 2 * EXPLAIN_SPAN as u64 - 1));
    }

    #[test]
    fn a_restart_under_the_same_pid_starts_over() {
        let t0 = Instant::now();
        let mut c = RequestCounters::new(WAIT);
        c.numbered("h", "1", 10, false, t0);
        c.numbered("h", "1", 15, false, t0);
        assert_eq!(c.numbered("h", "1", 0, false, t0), lost(4), "the old process's holes settle at once");
        c.numbered("h", "1", 1, false, t0);
        assert_eq!(c.settle(t0 + WAIT), Tally::default());
    }

    #[test]
    fn extreme_numbers_neither_overflow_nor_count_twice() {
        let t0 = Instant::now();
        let mut c = RequestCounters::new(WAIT);
        c.numbered("h", "1", 0, false, t0);
        c.numbered("h", "1", -5, false, t0);
        c.numbered("h", "1", i64::MAX, true, t0);
        assert_eq!(c.numbered("h", "1", i64::MAX, false, t0).late, 1, "a repeat");
        let t = c.settle(t0 + WAIT);
        assert_eq!((t.lost, t.explained), (i64::MAX as u64 - 3, 2));
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut c = RequestCounters::new(WAIT);
        for n in 0..(MAX_HOLES as i64 + 10) {
            c.numbered("h", "1", n * 2, false, t0);
        }
        assert!(c.processes.values().all(|p| p.holes.len() <= MAX_HOLES));
        for pid in 0..(MAX_PROCESSES + 10) {
            c.numbered("h", &pid.to_string(), 1, false, t0);
            c.unnumbered("h", &pid.to_string(), t0);
        }
        assert_eq!(c.processes(), MAX_PROCESSES);
    }
}
