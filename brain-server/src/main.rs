//! The `brain-server` binary: everything happens in [`brain_server::cli::main`].

use std::process::ExitCode;

fn main() -> ExitCode {
    brain_server::cli::main(std::env::args_os())
}
