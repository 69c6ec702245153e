//! Running the real `ferry` binary from tests.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

/// Runs `ferry ARGS` with no stdin and waits for it.
pub fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The stdout of a run that must have succeeded; otherwise fails the test
/// with its status and output.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ferry failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}
