//! The herald binary: parse the command line and hand over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    match herald::cli::parse() {
        Ok(cli) => herald::cli::main(cli),
        Err(code) => code,
    }
}
