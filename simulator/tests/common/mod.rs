//! What every test that runs the `sharedlb-sim` binary as a process needs: the binary,
//! a run that catches a hang, its output as text, the shipped examples and a scratch
//! directory. Shared by `cli.rs`, `inputs.rs` and `results.rs`.
#![allow(dead_code)] // Each test crate uses its own subset.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sharedlb-sim"))
}

/// The simulator crate's directory.
pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped examples.
pub fn examples() -> PathBuf {
    manifest().join("examples")
}

/// A fresh, empty scratch directory for this test process.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sharedlb-sim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary; any run taking over a minute is a hang.
#[allow(clippy::disallowed_methods)] // A test may read the wall clock to catch a hang.
pub fn run(args: &[&str]) -> Output {
    let start = Instant::now();
    let o = bin().args(args).output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{args:?} took {:?}",
        start.elapsed()
    );
    o
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
