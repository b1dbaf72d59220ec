//! `boxlite pull`, `login` and `logout`, and the pull `run` and `create` do first.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use boxlite::{Credential, ErrorKind, PullEvent, PullOptions, PullPolicy, Runtime};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::open_runtime;
use crate::Global;

/// Longest password read from stdin: a token is a few KiB.
const MAX_PASSWORD_BYTES: u64 = 64 << 10;

/// `boxlite pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// The image: `alpine`, `alpine:3.19`, `ghcr.io/org/repo:tag`, `repo@sha256:…`.
    reference: String,
    /// The platform to pull from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
}

/// `boxlite login`.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// The registry (`ghcr.io`, `127.0.0.1:5000`; default: docker.io).
    #[arg(default_value = "docker.io")]
    registry: String,
    /// The username (asked for on a terminal when not given).
    #[arg(short, long)]
    username: Option<String>,
    /// Read the password (or token) from stdin.
    #[arg(long)]
    password_stdin: bool,
}

/// `boxlite logout`.
#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The registry (default: docker.io).
    #[arg(default_value = "docker.io")]
    registry: String,
}

/// Pulls an image; prints its full reference and digest.
pub async fn pull(global: &Global, args: PullArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let pulled = pull_image(&runtime, &args.reference, args.platform.as_deref()).await?;
    // The one line a script reads: the name every command finds the image by.
    println!("{}", pulled.record.name);
    Ok(0)
}

/// Pulls `image` if `policy` says so, before `run` or `create` uses it (nothing on stdout,
/// which is the box's).
pub async fn ensure_image(
    runtime: &Runtime,
    image: &str,
    policy: PullPolicy,
    platform: Option<&str>,
) -> Result<()> {
    let pull = match policy {
        PullPolicy::Never => false,
        PullPolicy::Always => true,
        _ => match runtime.image(image) {
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::Image && boxlite::Reference::parse(image).is_ok() => {
                true
            }
            Err(_) => false, // the create reports it, in its words
        },
    };
    if pull {
        let missing = policy != PullPolicy::Always;
        match pull_image(runtime, image, platform).await {
            Err(e) if missing => match e.downcast::<boxlite::Error>() {
                Ok(e) => return Err(boxlite::images_not_here(image, e).into()),
                Err(e) => return Err(e),
            },
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Pulls with progress bars and then a summary line on a terminal (stderr); quiet otherwise.
async fn pull_image(
    runtime: &Runtime,
    reference: &str,
    platform: Option<&str>,
) -> Result<boxlite::Pulled> {
    let mut options = PullOptions::default();
    if let Some(p) = platform {
        options.platform = boxlite::parse_platform(p)?;
    }
    let bars = std::io::stderr().is_terminal().then(Bars::new);
    if let Some(bars) = &bars {
        let bars = bars.clone();
        options.progress = Some(Arc::new(move |e: &PullEvent| bars.on(e)));
    }
    let result = runtime.pull(reference, options).await;
    if let Some(bars) = &bars {
        bars.clear();
    }
    let pulled = result?;
    if bars.is_none() {
        return Ok(pulled);
    }
    let layers = pulled.record.layers.len();
    eprintln!(
        "Pulled {} ({}; {layers} layer{}, {} downloaded{})",
        pulled.record.name,
        pulled.record.manifest_digest,
        if layers == 1 { "" } else { "s" },
        crate::image::human_size(pulled.bytes_received),
        match pulled.layers_downloaded {
            0 => ", all layers already here".to_string(),
            n if n < layers => format!(", {} layers already here", layers - n),
            _ => String::new(),
        }
    );
    Ok(pulled)
}

/// A bar per layer and a total, drawn on stderr.
#[derive(Clone)]
struct Bars {
    inner: Arc<Mutex<BarState>>,
}

struct BarState {
    multi: MultiProgress,
    total: Option<ProgressBar>,
    layers: HashMap<usize, (ProgressBar, u64)>,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Bars {
            inner: Arc::new(Mutex::new(BarState {
                multi,
                total: None,
                layers: HashMap::new(),
            })),
        }
    }

    fn on(&self, event: &PullEvent) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            PullEvent::Resolved { layers, .. } => {
                let style = ProgressStyle::with_template(
                    "{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {msg}",
                )
                .map(|s| s.progress_chars("=> "))
                .ok();
                for (i, (digest, size)) in layers.iter().enumerate() {
                    let bar = state.multi.add(ProgressBar::new(*size));
                    if let Some(s) = style.clone() {
                        bar.set_style(s);
                    }
                    bar.set_prefix(digest.hex()[..12].to_string());
                    state.layers.insert(i, (bar, 0));
                }
                let sum = layers.iter().map(|(_, s)| *s).sum();
                let total = state.multi.add(ProgressBar::new(sum));
                if let Ok(s) = ProgressStyle::with_template(
                    "{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
                ) {
                    total.set_style(s.progress_chars("=> "));
                }
                total.set_prefix("total");
                state.total = Some(total);
            }
            PullEvent::Progress { index, bytes } => {
                let mut delta = 0i64;
                if let Some((bar, seen)) = state.layers.get_mut(index) {
                    delta = *bytes as i64 - *seen as i64;
                    *seen = *bytes;
                    bar.set_position(*bytes);
                }
                if let Some(total) = &state.total {
                    let pos = total.position() as i64 + delta;
                    total.set_position(pos.max(0) as u64);
                }
            }
            PullEvent::Downloaded { index, .. } => {
                if let Some((bar, _)) = state.layers.get(index) {
                    bar.set_message("extracting");
                }
            }
            PullEvent::Extracted { index } => {
                if let Some((bar, _)) = state.layers.get(index) {
                    bar.set_message("done");
                }
            }
            _ => {}
        }
    }

    fn clear(&self) {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = state.multi.clear();
    }
}

/// Checks and saves a login.
pub async fn login(global: &Global, args: LoginArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if terminal && !args.password_stdin => prompt("Username: ", true)?,
        None => bail!("give the username with -u USER"),
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::Read::take(stdin.lock(), MAX_PASSWORD_BYTES)
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if terminal {
        prompt("Password: ", false)?
    } else {
        bail!("stdin is not a terminal: pass the password with --password-stdin");
    };
    if username.is_empty() || password.is_empty() {
        bail!("the username and password must not be empty");
    }
    let saved = runtime
        .login(&args.registry, Credential::Basic { username, password })
        .await?;
    eprintln!("Login Succeeded (saved in {saved})");
    Ok(0)
}

/// Forgets a login.
pub async fn logout(global: &Global, args: LogoutArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    if runtime.logout(&args.registry)? {
        eprintln!("Removed login credentials for {}", args.registry);
    } else {
        eprintln!("Not logged in to {}", args.registry);
    }
    Ok(0)
}

/// Asks on the terminal; without echo for a password.
fn prompt(question: &str, echo: bool) -> Result<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let _quiet = if echo {
        None
    } else {
        Some(crate::tty::NoEcho::enable()?)
    };
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    if !echo {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
