//! `brain-emit` for the end-to-end tests: the same entry point as `brain-emit/src/main.rs`
//! ([`brain_emit::run`]), under a name of its own so that a workspace build does not write two
//! binaries to one output path. It calls itself `brain-emit` in usage and help. A hook's
//! detached background flush re-executes `std::env::current_exe()`, which is this program: it
//! runs the same code.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1);
    brain_emit::run(
        std::iter::once(OsString::from("brain-emit"))
            .chain(args)
            .collect(),
    )
}
