//! Starting the VM and reaching its agent.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use protocol::client::Client;
use protocol::{ExecRequest, Hello};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use super::console::{ConsoleLog, Mark};
use crate::engine::VmSpec;
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

/// Waits for the agent's hello on `channel` (the supervisor's end of the agent channel),
/// while watching that the VM lives and the deadline holds.
pub async fn connect(
    vm: &mut Child,
    spec: &VmSpec,
    channel: std::os::unix::net::UnixStream,
    timeout: Duration,
    console: &mut Console,
) -> Result<(Client, Hello)> {
    channel
        .set_nonblocking(true)
        .map_err(|e| Error::io("preparing", "the agent channel", e))?;
    let stream = UnixStream::from_std(channel)
        .map_err(|e| Error::io("preparing", "the agent channel", e))?;
    let boot = async {
        Client::handshake(stream)
            .await
            .map_err(|e| Error::protocol("greeting the box's agent", e))
    };
    let outcome = tokio::select! {
        connected = boot => connected.map_err(|e| e.to_string()),
        status = vm.wait() => {
            // Everything the VM wrote is in the log once its end of the console closes.
            console.drain(CONSOLE_DRAIN).await;
            Err(match status {
                Ok(status) => format!("the VM ended during boot ({status})"),
                Err(e) => format!("the VM ended during boot: {e}"),
            })
        }
        () = tokio::time::sleep(timeout) => Err(format!(
            "the guest did not answer within {timeout:?} (a longer boot timeout waits longer)"
        )),
    };
    let (client, hello) = match outcome {
        Ok(connected) => connected,
        Err(message) => return Err(boot_error(message, spec, console)),
    };
    if hello.capabilities.iter().any(|c| c == ROOT_FAILED) {
        return Err(boot_error(
            "the guest could not build the box's root filesystem (disk full or damaged?)".into(),
            spec,
            console,
        ));
    }
    Ok((client, hello))
}

/// How long a boot failure waits for the console's last words to reach the log.
const CONSOLE_DRAIN: Duration = Duration::from_secs(2);

/// The box's console as the boot sees it: the log, where this boot started in it, and the
/// task that copies the VM's console into it.
pub struct Console {
    /// The log.
    pub log: ConsoleLog,
    /// Where this boot started in it.
    pub start: Mark,
    /// The log's file.
    pub path: std::path::PathBuf,
    /// The copying task, until it is drained.
    pub pump: Option<tokio::task::JoinHandle<()>>,
}

impl Console {
    /// Waits up to `patience` for the VM's console to close and its output to be logged.
    pub async fn drain(&mut self, patience: Duration) {
        if let Some(pump) = self.pump.take() {
            let _ = tokio::time::timeout(patience, pump).await;
        }
    }
}

/// A boot error quoting what this boot wrote to the console, and what the VM process said.
fn boot_error(message: String, spec: &VmSpec, console: &Console) -> Error {
    let vm_said = console_tail(&spec.vm_log, 0);
    let message = if vm_said.trim().is_empty() {
        message
    } else {
        format!("{message}; the VM process said: {}", vm_said.trim_end())
    };
    Error::Boot {
        message,
        console: console_tail(&console.path, console.log.offset_of(console.start)),
    }
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
    // The guest wrote it: shown, never sent to a terminal as it is.
    crate::text::printable(&String::from_utf8_lossy(&tail))
}

/// Runs the box's main command, appending its output to the console log; its exit code.
pub async fn run_main(guest: &Client, request: ExecRequest, log: ConsoleLog) -> Option<i32> {
    let mut running = match guest.exec(request).await {
        Ok(running) => running,
        Err(e) => {
            log.append(format!("boxlite: the box's command failed: {e}\n").as_bytes());
            return Some(127);
        }
    };
    drop(running.stdin.take());
    let out = running.stdout.take();
    let err = running.stderr.take();
    tokio::join!(copy_into(out, log.clone()), copy_into(err, log));
    running
        .wait()
        .await
        .ok()
        .and_then(|s| s.code.or(s.signal.map(|s| 128 + s)))
}

/// Appends what `from` delivers to `log` until its end.
async fn copy_into(from: Option<protocol::client::ExecOutput>, log: ConsoleLog) {
    let Some(mut from) = from else {
        return;
    };
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut from, &mut buf).await {
        if n == 0 {
            return;
        }
        let chunk = buf[..n].to_vec();
        let log = log.clone();
        // A file write: off the supervisor's one async thread.
        let _ = tokio::task::spawn_blocking(move || log.append(&chunk)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_tail_carries_no_terminal_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, b"old\nboot \x1b]0;owned\x07\x1b[2Jdone\n").unwrap();
        let tail = console_tail(&log, 4);
        assert_eq!(tail, "boot \\x1b]0;owned\\x07\\x1b[2Jdone\n");
        assert_eq!(console_tail(&dir.path().join("none"), 0), "");
    }
}
