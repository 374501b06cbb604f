//! The herald binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    herald::cli::main(herald::cli::Cli::parse())
}
