//! Starting the VM and reaching its agent.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use protocol::client::Client;
use protocol::{ExecRequest, Hello};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::engine::{Device, VmSpec};
use crate::error::{Error, Result};

/// The most console output an error message quotes.
pub const CONSOLE_TAIL_BYTES: u64 = 4096;

/// The capability an agent announces when it could not build the box's root.
const ROOT_FAILED: &str = "root-failed";

/// Starts the engine's `std_command` for `spec` in `jail` (which makes it die with this
/// process's spawning thread); what the jail applies comes back with the child.
pub fn spawn(
    mut std_command: std::process::Command,
    spec: &VmSpec,
    jail: jail::Jail,
) -> Result<(Child, jail::Jailed)> {
    let program = std::path::PathBuf::from(std_command.get_program());
    let vm_log =
        std::fs::File::create(&spec.vm_log).map_err(|e| Error::io("creating", &spec.vm_log, e))?;
    let jailed = jail
        .apply(&mut std_command)
        .map_err(|e| Error::InvalidInput(format!("preparing the VM's jail: {e}")))?;
    let mut command = Command::from(std_command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(vm_log)
        .kill_on_drop(true);
    match command.spawn() {
        Ok(child) => Ok((child, jailed)),
        Err(e) => {
            let _ = jailed.finish();
            Err(Error::io("starting the VM", &program, e))
        }
    }
}

/// Waits for the agent's hello on the engine's socket, while watching that the VM lives and
/// the deadline holds.
pub async fn connect(
    vm: &mut Child,
    spec: &VmSpec,
    timeout: Duration,
    console_start: u64,
) -> Result<(Client, Hello)> {
    let socket = agent_socket(spec)?;
    let boot = async {
        let stream = loop {
            match UnixStream::connect(&socket).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        Client::handshake(stream)
            .await
            .map_err(|e| Error::protocol("greeting the box's agent", e))
    };
    let outcome = tokio::select! {
        connected = boot => connected,
        status = vm.wait() => Err(boot_error(
            match status {
                Ok(status) => format!("the VM ended during boot ({status})"),
                Err(e) => format!("the VM ended during boot: {e}"),
            },
            spec,
            console_start,
        )),
        () = tokio::time::sleep(timeout) => Err(boot_error(
            format!("the guest did not answer within {timeout:?} (a longer boot timeout \
                waits longer)"),
            spec,
            console_start,
        )),
    };
    let (client, hello) = match outcome {
        Ok(connected) => connected,
        Err(Error::Boot { message, console }) => return Err(Error::Boot { message, console }),
        Err(e) => return Err(boot_error(e.to_string(), spec, console_start)),
    };
    if hello.capabilities.iter().any(|c| c == ROOT_FAILED) {
        return Err(boot_error(
            "the guest could not build the box's root filesystem (disk full or damaged?)".into(),
            spec,
            console_start,
        ));
    }
    Ok((client, hello))
}

/// A boot error quoting what this boot wrote to the console, and what the VM process said.
fn boot_error(message: String, spec: &VmSpec, console_start: u64) -> Error {
    let vm_said = console_tail(&spec.vm_log, 0);
    let message = if vm_said.trim().is_empty() {
        message
    } else {
        format!("{message}; the VM process said: {}", vm_said.trim_end())
    };
    Error::Boot {
        message,
        console: console_log(spec).map_or_else(String::new, |log| console_tail(log, console_start)),
    }
}

/// The spec's agent socket.
fn agent_socket(spec: &VmSpec) -> Result<&Path> {
    spec.devices
        .iter()
        .find_map(|d| match d {
            Device::Agent { socket } => Some(socket.as_path()),
            _ => None,
        })
        .ok_or_else(|| Error::InvalidInput("a box's VM needs an agent channel".into()))
}

/// The spec's console log, if it has a console.
fn console_log(spec: &VmSpec) -> Option<&Path> {
    spec.devices.iter().find_map(|d| match d {
        Device::Console { log } => Some(log.as_path()),
        _ => None,
    })
}

/// The last [`CONSOLE_TAIL_BYTES`] of `path` written after byte `start`.
pub fn console_tail(path: &Path, start: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(CONSOLE_TAIL_BYTES).max(start.min(len));
    let mut tail = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut tail).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// Runs the box's main command, appending its output to the console log; its exit code.
pub async fn run_main(guest: &Client, request: ExecRequest, console: &Path) -> Option<i32> {
    let log = tokio::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(console)
        .await
        .ok();
    let mut running = match guest.exec(request).await {
        Ok(running) => running,
        Err(e) => {
            if let Some(mut log) = log {
                let _ = log
                    .write_all(format!("boxlite: the box's command failed: {e}\n").as_bytes())
                    .await;
            }
            return Some(127);
        }
    };
    drop(running.stdin.take());
    let out = running.stdout.take();
    let err = running.stderr.take();
    if let Some(log) = log {
        let log2 = log.try_clone().await.ok();
        tokio::join!(copy_into(out, Some(log)), copy_into(err, log2));
    }
    running
        .wait()
        .await
        .ok()
        .and_then(|s| s.code.or(s.signal.map(|s| 128 + s)))
}

async fn copy_into(from: Option<protocol::client::ExecOutput>, to: Option<tokio::fs::File>) {
    if let (Some(mut from), Some(mut to)) = (from, to) {
        let _ = tokio::io::copy(&mut from, &mut to).await;
    }
}
