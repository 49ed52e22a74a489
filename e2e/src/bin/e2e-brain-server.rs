//! `brain-server` for the end-to-end tests: the same entry point as `brain-server/src/main.rs`
//! ([`brain_server::cli::main`]), under a name of its own so that a workspace build does not
//! write two binaries to one output path. It calls itself `brain-server` in usage and help.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1);
    brain_server::cli::main(std::iter::once(OsString::from("brain-server")).chain(args))
}
