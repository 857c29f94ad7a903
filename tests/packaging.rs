//! The systemd unit in `packaging/` is accepted by `systemd-analyze verify` once its
//! `ExecStart` points at the built binary, keeps its hardening, and the check is real: the
//! same unit pointing at a missing binary is refused.

use std::process::Command;

const UNIT: &str = include_str!("../packaging/logbook.service");
const INSTALLED_AT: &str = "/usr/local/bin/logbook";

fn verify(unit: &str) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logbook.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().ok()?;
    Some((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies_against_the_built_binary() {
    for setting in ["ProtectSystem=strict", "ReadWritePaths=/var/lib/logbook", "NoNewPrivileges=yes", "DynamicUser=yes"]
    {
        assert!(UNIT.lines().any(|l| l.trim() == setting), "the unit lacks {setting}");
    }
    let exec = UNIT.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    assert!(exec.contains(INSTALLED_AT) && exec.contains(" serve "), "{exec}");
    let built = UNIT.replace(INSTALLED_AT, env!("CARGO_BIN_EXE_logbook"));
    let Some((ok, messages)) = verify(&built) else {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
        return;
    };
    assert!(ok, "systemd-analyze verify refused the unit: {messages}");
    let missing = UNIT.replace(INSTALLED_AT, "/nonexistent/logbook");
    let (ok, messages) = verify(&missing).unwrap();
    assert!(!ok, "a unit whose binary is missing must be refused");
    assert!(messages.contains("/nonexistent/logbook"), "{messages}");
}
