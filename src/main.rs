//! The `isobuild` binary: parse the command line, run, print the error, exit with its code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = isobuild::cli::Cli::parse();
    init_logging(&cli);
    match isobuild::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_silent() => ExitCode::from(error.exit_code()),
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                // A registry's own words can echo a token: never print one.
                let text = isobuild::source::auth::scrub(&error.to_string());
                eprintln!("error: {text}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG`; `-vv` turns on debug logs for isobuild.
fn init_logging(cli: &isobuild::cli::Cli) {
    use tracing_subscriber::EnvFilter;
    let very_verbose = std::env::args().any(|arg| arg == "-vv" || arg == "--verbose=2");
    let _ = cli;
    let default = if very_verbose {
        "isobuild=debug"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
