//! `boxlite run` and `boxlite create`: a box from an image, with a command.

use anyhow::{Context, Result, bail};
use boxlite::{
    BoxCommand, BoxOptions, DEFAULT_CPUS, DEFAULT_MEMORY_MIB, EngineKind, LiteBox, NetworkMode,
    PortMapping, PullPolicy, RemoveMode, Runtime, Volume,
};
use tokio::sync::mpsc;

use super::{command_failure, exit_code, open_runtime, parse_env};
use crate::Global;
use crate::attach::{self, Attach};

/// How a box is made: the flags `run` and `create` share.
#[derive(clap::Args)]
pub struct BoxFlags {
    /// Name the box (default: box-<8 hex digits of its id>).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Set an environment variable for every command in the box (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Working directory for commands (absolute; default: the image's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User for commands: name, uid or uid:gid (default: the image's).
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// vCPUs.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CPUS)]
    cpus: u32,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_MIB)]
    memory: u32,
    /// Size of the box's writable disk in GiB (sparse: only what is written takes space).
    #[arg(long = "disk-size", value_name = "GIB")]
    disk_size: Option<u64>,
    /// Virtual machine monitor: auto, kvm or qemu.
    #[arg(long, value_name = "ENGINE", default_value = "auto")]
    engine: String,
    /// Pull the image from its registry: missing (when not here), always, or never.
    #[arg(long, value_name = "WHEN", default_value = "missing")]
    pull: String,
    /// The platform to pull from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// The box's network: on (public internet only, unless --allow-net says otherwise) or
    /// off (no network device).
    #[arg(long, value_name = "on|off", default_value = "on")]
    network: String,
    /// Reach only what a rule allows (repeatable): an IP, a CIDR, a domain or *.domain,
    /// optionally :PORT or :LOW-HIGH; `host[:PORT]` is this host's loopback, which the box
    /// reaches as host.boxlite.internal.
    #[arg(long = "allow-net", value_name = "RULE")]
    allow_net: Vec<String>,
    /// Never reach what a rule matches (repeatable; same syntax as --allow-net).
    #[arg(long = "deny-net", value_name = "RULE")]
    deny_net: Vec<String>,
    /// Publish a box port on the host (repeatable): [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp].
    /// HOSTIP defaults to 127.0.0.1 (not every interface, as docker does); HOSTPORT 0 picks
    /// a free port (see `boxlite ls`).
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<String>,
    /// Mount a volume (repeatable): HOSTDIR:GUESTPATH[:ro] shares a host directory live;
    /// NAME:GUESTPATH[:ro] attaches a named volume (`boxlite volume create`).
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:GUESTPATH[:ro]")]
    volume: Vec<String>,
}

impl BoxFlags {
    /// The box options these flags ask for, checked against their limits before anything is
    /// made (the runtime checks the host's memory).
    fn options(&self, image: &str) -> Result<BoxOptions> {
        let mut options = BoxOptions::new(image);
        options.name = self.name.clone();
        options.env = parse_env(&self.env)?;
        options.working_dir = self.workdir.clone();
        options.user = self.user.clone();
        options.cpus = self.cpus;
        options.memory_mib = self.memory;
        if let Some(gib) = self.disk_size {
            options.disk_size_mib = gib
                .checked_mul(1024)
                .with_context(|| format!("--disk-size {gib} GiB is too large"))?;
        }
        options.engine = self.engine.parse::<EngineKind>()?;
        options.network.mode = self.network.parse::<NetworkMode>()?;
        options.network.allow = self.allow_net.clone();
        options.network.deny = self.deny_net.clone();
        for port in &self.publish {
            options.network.publish.push(port.parse::<PortMapping>()?);
        }
        for volume in &self.volume {
            options.volumes.push(parse_volume(volume)?);
        }
        options.validate()?;
        Ok(options)
    }

    /// Pulls the image as `--pull` says, with progress; the box is then made from what is
    /// here (the runtime does not pull again).
    async fn ensure_image(&self, runtime: &Runtime, options: &mut BoxOptions) -> Result<()> {
        let policy: PullPolicy = self.pull.parse()?;
        super::pull::ensure_image(runtime, &options.image, policy, self.platform.as_deref())
            .await?;
        options.pull = PullPolicy::Never;
        Ok(())
    }
}

/// A `-v` value, a relative host directory (`./dir`, `../dir`) made absolute from the
/// current directory first, as docker does.
fn parse_volume(value: &str) -> Result<Volume> {
    if value.starts_with("./")
        || value.starts_with("../")
        || value == "."
        || value.starts_with(".:")
    {
        let (dir, rest) = value.split_once(':').unwrap_or((value, ""));
        let absolute = std::env::current_dir()
            .context("finding the current directory for a relative -v path")?
            .join(dir);
        let absolute = absolute
            .canonicalize()
            .with_context(|| format!("-v {value}: the host directory {}", absolute.display()))?;
        let absolute = absolute
            .to_str()
            .with_context(|| format!("-v {value}: the host path is not UTF-8"))?;
        return Ok(format!("{absolute}:{rest}").parse::<Volume>()?);
    }
    Ok(value.parse::<Volume>()?)
}

/// `boxlite run`.
#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    flags: BoxFlags,
    /// Remove the box when it stops.
    #[arg(long)]
    rm: bool,
    /// Start the box with its main command (CMD, else the image's entrypoint and cmd, as
    /// docker runs them) and print its id; the box stops when the command ends. An idle box
    /// to `exec` in is `create` then `start`.
    #[arg(short = 'd', long, conflicts_with_all = ["interactive", "tty"])]
    detach: bool,
    /// Pass this terminal's stdin to the command (otherwise its stdin is closed).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Run the command on a pseudo-terminal (with -i: this terminal in raw mode).
    #[arg(short = 't', long)]
    tty: bool,
    /// The image: a reference to pull (`alpine:3.19`), or a name or digest prefix as
    /// `boxlite image ls` shows.
    image: String,
    /// The command: arguments to the image's entrypoint (default: the image's command).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// `boxlite create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    flags: BoxFlags,
    /// The image: a reference to pull (`alpine:3.19`), or a name or digest prefix as
    /// `boxlite image ls` shows.
    image: String,
    /// The box's main command (after the image's entrypoint), run whenever it starts; the
    /// box stops when it ends. None: the box idles, serving `exec`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// Creates a box; prints its id.
pub async fn create(global: &Global, args: CreateArgs) -> Result<u8> {
    let mut options = args.flags.options(&args.image)?;
    let runtime = open_runtime(global)?;
    args.flags.ensure_image(&runtime, &mut options).await?;
    if !args.command.is_empty() {
        options.command = run_argv(&runtime, &args.image, &args.command)?;
    }
    let litebox = runtime.create(options).await?;
    println!("{}", litebox.id());
    Ok(0)
}

/// Runs a command in a new box: in the foreground, or (`-d`) as the box's main command.
pub async fn run(global: &Global, args: RunArgs) -> Result<u8> {
    let how = Attach {
        stdin: args.interactive,
        tty: args.tty,
    };
    how.check()?;
    let mut options = args.flags.options(&args.image)?;
    let runtime = open_runtime(global)?;
    args.flags.ensure_image(&runtime, &mut options).await?;
    let argv = run_argv(&runtime, &args.image, &args.command)?;
    options.auto_remove = args.rm;
    if argv.is_empty() {
        bail!(
            "no command given, and image {} has no default command (an idle box to exec in \
             is `boxlite create IMAGE` then `boxlite start`)",
            args.image
        );
    }
    if args.detach {
        // As docker: the image's entrypoint and cmd (a server image's server) run as the
        // box's main command.
        options.command = argv;
        let litebox = runtime.create(options).await?;
        if let Err(e) = litebox.start().await {
            if args.rm {
                let _ = litebox.remove(RemoveMode::Kill).await;
            }
            return Err(e.into());
        }
        println!("{}", litebox.id());
        return Ok(0);
    }
    // A named volume outlives the box: its disk must be unmounted cleanly.
    let keeps_disks = options
        .volumes
        .iter()
        .any(|v| matches!(v.source, boxlite::VolumeSource::Named { .. }));
    let litebox = runtime.create(options).await?;
    let result = run_in(&litebox, argv, how).await;
    // Like docker, the box ends with its command: nothing else runs in it. A box about to be
    // removed needs no clean power-off (its disk is deleted), so it is stopped at once.
    let stopped = if args.rm && !keeps_disks {
        litebox.stop_with_grace(std::time::Duration::ZERO).await
    } else {
        litebox.stop().await
    };
    match stopped {
        // An auto-remove box may be gone already (a signal during boot stopped it).
        Ok(()) | Err(boxlite::Error::NoSuchBox(_)) => {}
        Err(e) => eprintln!(
            "boxlite: warning: stopping box {}: {}",
            litebox.name(),
            crate::describe(&e.into())
        ),
    }
    if args.rm {
        remove_quietly(&runtime, &litebox).await;
    }
    result
}

/// The argv `run IMAGE ARGS` runs, as docker composes it from the image's config.
fn run_argv(runtime: &Runtime, image: &str, args: &[String]) -> Result<Vec<String>> {
    let image = runtime.image(image)?;
    Ok(boxlite::run_argv(args, &image.config.config))
}

/// Starts the box, runs `argv` in it attached to us; the exit status.
async fn run_in(litebox: &LiteBox, argv: Vec<String>, how: Attach) -> Result<u8> {
    // Caught from here on: a Ctrl-C while the box boots stops the box instead of leaving it
    // running with no one attached.
    let mut signals = attach::catch_signals();
    tokio::select! {
        started = litebox.start() => started?,
        Some(number) = signals.recv() => {
            let _ = litebox.stop_with_grace(std::time::Duration::ZERO).await;
            return Ok(exit_code(&boxlite::ExitStatus {
                signal: Some(number),
                ..Default::default()
            }));
        }
    }
    run_command(litebox, BoxCommand::from_argv(argv), how, signals).await
}

/// Runs `command` in the running box, attached; the shell-style exit status (127/126 with
/// the agent's words when the command cannot be started).
pub async fn run_command(
    litebox: &LiteBox,
    mut command: BoxCommand,
    how: Attach,
    signals: mpsc::Receiver<i32>,
) -> Result<u8> {
    command.tty = how.tty_size();
    let execution = match litebox.exec(command).await {
        Ok(execution) => execution,
        Err(e) => {
            if let Some((code, message)) = command_failure(&e) {
                eprintln!("boxlite: error: {message}");
                return Ok(code);
            }
            return Err(e.into());
        }
    };
    let status = attach::attach(execution, how, signals).await?;
    Ok(exit_code(&status))
}

/// Removes the box unless it is gone already (an auto-remove box removes itself as it
/// stops); a failure is reported, not fatal: the command's status matters more.
async fn remove_quietly(runtime: &Runtime, litebox: &LiteBox) {
    match runtime.remove(litebox.id(), RemoveMode::Kill).await {
        Ok(()) | Err(boxlite::Error::NoSuchBox(_)) => {}
        Err(e) => eprintln!(
            "boxlite: warning: removing box {}: {}",
            litebox.name(),
            crate::describe(&e.into())
        ),
    }
}
