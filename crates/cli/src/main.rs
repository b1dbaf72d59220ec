//! `boxlite`: the command-line front end of the boxlite runtime.

mod attach;
mod cmd;
mod image;
mod tty;
mod words;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit status of a failure of boxlite itself (not of a command in a box), as docker
/// uses it: scripts tell "the tool failed" from "the command failed" by it.
pub const EXIT_BOXLITE: u8 = 125;

/// The hidden first argument that makes this binary a box's supervisor.
const SUPERVISE: &str = "__supervise";

#[derive(Parser)]
#[command(
    name = "boxlite",
    version,
    about = "Micro-VM sandboxes from OCI images"
)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand takes.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// State directory (images, layer cache, boxes). Default: $BOXLITE_HOME, else
    /// $XDG_DATA_HOME/boxlite, else ~/.local/share/boxlite.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub home: Option<PathBuf>,

    /// The guest kernel (vmlinux or bzImage). Default: $BOXLITE_KERNEL, else vmlinux or
    /// bzImage in <home>/guest/, else in ~/.local/share/boxlite-guest/.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub kernel: Option<PathBuf>,

    /// The guest agent's initramfs. Default: $BOXLITE_INITRAMFS, else initramfs.cpio.gz in
    /// <home>/guest/, else in ~/.local/share/boxlite-guest/.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub initramfs: Option<PathBuf>,

    /// A registry (host or host:port) that may be spoken to over plain HTTP when HTTPS
    /// fails, as loopback registries always may; repeatable. Also $BOXLITE_INSECURE_REGISTRIES.
    #[arg(
        long,
        global = true,
        value_name = "HOST",
        help_heading = "Registry options"
    )]
    pub insecure_registry: Vec<String>,

    /// A registry tried first for docker.io images. Also $BOXLITE_REGISTRY_MIRROR.
    #[arg(
        long,
        global = true,
        value_name = "HOST",
        help_heading = "Registry options"
    )]
    pub registry_mirror: Option<String>,

    /// A PEM file of CA certificates trusted for registries, besides the system's; repeatable.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Registry options"
    )]
    pub registry_ca: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a box from an image, start it, and run a command in it.
    Run(cmd::run::RunArgs),
    /// Create a box (not started).
    Create(cmd::run::CreateArgs),
    /// Start boxes.
    Start(cmd::lifecycle::StartArgs),
    /// Stop boxes.
    Stop(cmd::lifecycle::StopArgs),
    /// Stop, then start boxes.
    Restart(cmd::lifecycle::StartArgs),
    /// Run a command in a running box.
    Exec(cmd::exec::ExecArgs),
    /// List boxes.
    #[command(alias = "ps", alias = "list")]
    Ls(cmd::ls::LsArgs),
    /// Print a box's record and metrics as JSON.
    Inspect(cmd::ls::BoxArg),
    /// Print a box's console log.
    Logs(cmd::ls::BoxArg),
    /// Copy files between the host and a box (BOX:PATH on one side).
    Cp(cmd::cp::CpArgs),
    /// Remove boxes.
    #[command(alias = "remove")]
    Rm(cmd::lifecycle::RmArgs),
    /// Show the host's engines, KVM and the guest files boxlite would use.
    Info(cmd::info::InfoArgs),
    /// Pull an image from a registry.
    Pull(cmd::pull::PullArgs),
    /// Save credentials for a registry (in the docker config file).
    Login(cmd::pull::LoginArgs),
    /// Remove saved credentials for a registry.
    Logout(cmd::pull::LogoutArgs),
    /// Manage images: import, list, inspect, remove, unpack.
    #[command(subcommand)]
    Image(image::Command),
    /// Manage named volumes: create, list, inspect, remove.
    #[command(subcommand)]
    Volume(cmd::volume::Command),
}

fn main() -> ExitCode {
    // A box's supervisor: the runtime gives it its arguments on stdin.
    if std::env::args_os().nth(1).is_some_and(|a| a == SUPERVISE) {
        return boxlite::supervise();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    let result = match cli.command {
        Command::Image(cmd) => cmd::open_runtime(&cli.global)
            .and_then(|rt| image::run(&rt, cmd))
            .map(|()| 0),
        command => run_async(&cli.global, command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("boxlite: error: {}", boxlite::printable(&describe(&err)));
            ExitCode::from(EXIT_BOXLITE)
        }
    }
}

/// Runs a box command on a tokio runtime; the command's exit status.
fn run_async(global: &Global, command: Command) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match command {
            Command::Run(args) => cmd::run::run(global, args).await,
            Command::Create(args) => cmd::run::create(global, args).await,
            Command::Start(args) => cmd::lifecycle::start(global, args).await,
            Command::Stop(args) => cmd::lifecycle::stop(global, args).await,
            Command::Restart(args) => cmd::lifecycle::restart(global, args).await,
            Command::Exec(args) => cmd::exec::exec(global, args).await,
            Command::Ls(args) => cmd::ls::ls(global, args).await,
            Command::Inspect(args) => cmd::ls::inspect(global, args).await,
            Command::Logs(args) => cmd::ls::logs(global, args).await,
            Command::Cp(args) => cmd::cp::cp(global, args).await,
            Command::Rm(args) => cmd::lifecycle::rm(global, args).await,
            Command::Info(args) => cmd::info::info(global, args),
            Command::Pull(args) => cmd::pull::pull(global, args).await,
            Command::Login(args) => cmd::pull::login(global, args).await,
            Command::Logout(args) => cmd::pull::logout(global, args).await,
            Command::Volume(command) => cmd::volume::run(global, command).await,
            Command::Image(_) => Ok(0),
        }
    });
    // Blocking reads of our stdin may still be pending; they must not hold the exit up.
    runtime.shutdown_background();
    result
}

/// Prints a command-line error as one `boxlite: error:` line (help and version go to stdout
/// whole, with status 0).
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(EXIT_BOXLITE)
        } else {
            ExitCode::SUCCESS
        };
    }
    // Clap's first paragraph is the error (it may name the missing arguments on lines of
    // their own); the usage and tips after it are what `--help` shows.
    let rendered = err.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let text = paragraph.join(" ");
    let first = text.strip_prefix("error: ").unwrap_or(&text);
    eprintln!("boxlite: error: {first} (see --help)");
    ExitCode::from(EXIT_BOXLITE)
}

/// The error for stderr: on one line, except a boot failure, whose console tail must be
/// read as the lines it is.
fn describe(err: &anyhow::Error) -> String {
    let multi_line = err
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(boxlite::Error::Boot { .. })));
    let line = joined(err);
    if multi_line {
        line
    } else {
        line.replace('\n', " ")
    }
}

/// The error and its causes, without repeating a cause its parent already quotes; the
/// runtime's own errors in this command's words.
fn joined(err: &anyhow::Error) -> String {
    let text = |cause: &(dyn std::error::Error + 'static)| {
        cause
            .downcast_ref::<boxlite::Error>()
            .and_then(words::reword)
            .unwrap_or_else(|| cause.to_string())
    };
    let mut chain = err.chain();
    let mut line = chain.next().map(text).unwrap_or_default();
    for cause in chain {
        let plain = cause.to_string();
        if !line.contains(&plain) {
            line.push_str(": ");
            line.push_str(&text(cause));
        }
    }
    line
}
