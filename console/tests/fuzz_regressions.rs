//! Replays every saved fuzz input (console/fuzz/regressions/TARGET/*)
//! through the fuzz targets' own code: none may panic.

use std::path::Path;

#[test]
fn saved_fuzz_inputs_replay_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/filter");
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        weir_console::harness::filter(&std::fs::read(&path).unwrap());
    }
}
