//! Weir benchmarks.
