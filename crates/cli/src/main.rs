//! `boxlite`: the command-line front end of the boxlite runtime.

mod home;
mod image;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "boxlite",
    version,
    about = "Micro-VM sandboxes from OCI images"
)]
struct Cli {
    /// State directory (images, layer cache, boxes). Default: $XDG_DATA_HOME/boxlite.
    #[arg(long, global = true, env = "BOXLITE_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage images: import, list, inspect, remove, unpack.
    #[command(subcommand)]
    Image(image::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = home::resolve(cli.home);
    let result = match cli.command {
        Command::Image(cmd) => image::run(&home, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("boxlite: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}
