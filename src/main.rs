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

/// Logs go to stderr: isobuild's warnings by default (library noise stays out), more with
/// `-v`/`-vv` (counted, so `-v -v` is `-vv`), `RUST_LOG` replacing the filter. Colour only
/// where [`isobuild::settings::resolve_color`] allows it, so a pipe gets no ANSI.
fn init_logging(cli: &isobuild::cli::Cli) {
    use isobuild::cli::Command;
    use tracing_subscriber::EnvFilter;
    let output = match &cli.command {
        Command::Build { build, .. }
        | Command::Fetch { build, .. }
        | Command::Lock { build }
        | Command::Layout { build, .. } => Some(&build.output),
        Command::Verify { output, .. } | Command::Inspect { output, .. } => Some(output),
        _ => None,
    };
    let verbosity = output.map_or(0, |output| {
        if output.quiet {
            -1
        } else {
            i8::try_from(output.verbose).unwrap_or(i8::MAX)
        }
    });
    let filter = isobuild::settings::log_filter(verbosity);
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_ansi(isobuild::settings::resolve_color(cli.color))
        .with_target(verbosity >= 2)
        .without_time()
        .init();
}
