//! The `brain-emit` binary: everything happens in [`brain_emit::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    brain_emit::run(std::env::args_os().collect())
}
