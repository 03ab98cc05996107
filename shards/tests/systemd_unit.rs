//! `config/weir.service` passes `systemd-analyze verify`, pointed at this
//! build's binary (the unit names /usr/local/bin/weir).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_unit_file_verifies() {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/weir.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for key in ["Type=notify", "WatchdogSec=", "Restart=always", "NoNewPrivileges=yes", "CapabilityBoundingSet="] {
        assert!(text.contains(key), "weir.service lacks {key}");
    }
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: only the unit's keys were checked");
        return;
    };
    assert!(version.status.success());
    let dir = std::env::temp_dir().join(format!("weir-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("weir.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/weir", env!("CARGO_BIN_EXE_weir"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
