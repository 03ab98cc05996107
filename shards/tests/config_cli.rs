//! `weir config check` and `weir config defaults`, with environment
//! overrides.

use std::process::Command;

fn weir(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn config_check_applies_environment_overrides() {
    let dir = std::env::temp_dir().join(format!("weir-config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("weir.toml");
    std::fs::write(&file, "[shards]\ncores = [0]\ncontrol_core = 0\n").unwrap();
    let path = file.to_str().unwrap();
    let (ok, said) = weir(&["config", "check", path], &[]);
    assert!(ok, "{said}");
    assert!(said.contains("1 shards on CPUs [0]"), "{said}");
    let (ok, said) = weir(&["config", "check", path], &[("WEIR_SHARDS__RECEIVE_BATCH_DATAGRAMS", "0")]);
    assert!(!ok && said.contains("shards.receive_batch_datagrams"), "{said}");
    let (ok, said) = weir(&["config", "check", path], &[("WEIR_HTTP__LISTEN", "not an address")]);
    assert!(!ok && said.contains("WEIR_HTTP__LISTEN"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_defaults_is_the_commented_default_file() {
    let (ok, said) = weir(&["config", "defaults"], &[]);
    assert!(ok);
    assert_eq!(said, include_str!("../../config/weir.toml"));
}
