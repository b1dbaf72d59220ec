//! Starting a supervisor from the runtime: the one place that owns both ends of its
//! readiness pipe.
//!
//! The supervisor reads its [`SupervisorArgs`] from its stdin and answers on its stdout, one
//! line (`ok` or `error: …`) then EOF, so no descriptor numbers are agreed across processes.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::SupervisorArgs;
use crate::error::{Error, Result};
use crate::options::SupervisorCommand;

/// What the supervisor answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The box runs.
    Ready,
    /// The boot failed, in the supervisor's words.
    Failed(String),
    /// The supervisor ended without answering.
    Silent,
}

/// Starts `supervisor` for `args` in a session of its own, its stderr appended to `log`, and
/// waits for its answer. The supervisor outlives this call (and maybe this process).
pub fn launch(supervisor: &SupervisorCommand, args: &SupervisorArgs, log: &Path) -> Result<Answer> {
    let input = args.to_bytes()?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::home::PRIVATE_FILE_MODE)
        .open(log)
        .map_err(|e| Error::io("opening", log, e))?;
    let mut command = Command::new(&supervisor.program);
    command
        .args(&supervisor.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file);
    // SAFETY: runs in the child between fork and exec and calls only setsid(2), which is
    // async-signal-safe and touches no memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            // Its own session: the caller's terminal signals (Ctrl-C) must not reach it.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::io("starting the supervisor", &supervisor.program, e))?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Error::Host("the supervisor's pipes were not made".into()));
    };
    // Reaped in the background: the supervisor outlives this call, maybe this process.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    // A supervisor that dies before reading its stdin breaks the pipe: its silence says so.
    let _ = stdin.write_all(&input);
    drop(stdin);
    let mut text = String::new();
    stdout
        .read_to_string(&mut text)
        .map_err(|e| Error::io("reading the readiness pipe of", &supervisor.program, e))?;
    Ok(parse_answer(&text))
}

/// Reads the supervisor's one line.
fn parse_answer(text: &str) -> Answer {
    if text.trim_end() == "ok" {
        Answer::Ready
    } else if let Some(message) = text.strip_prefix("error: ") {
        Answer::Failed(message.trim_end().to_string())
    } else {
        Answer::Silent
    }
}

/// The supervisor's end of the pipe: its stdout, moved off descriptor 1 so that nothing it
/// starts inherits it (the starter reads until EOF, which would then come only when the VM
/// ends).
pub struct Ready {
    pipe: Option<std::fs::File>,
}

impl Ready {
    /// Takes the process's stdout as the readiness pipe, leaving `/dev/null` in its place.
    pub fn take_stdout() -> Ready {
        let pipe = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)
            .ok()
            .map(std::fs::File::from);
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
        Ready { pipe }
    }

    /// Says the box runs.
    pub fn succeed(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"ok\n");
        }
    }

    /// Says why the box did not start.
    pub fn fail(&mut self, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(format!("error: {message}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_answer("ok\n"), Answer::Ready);
        assert_eq!(
            parse_answer("error: no disk\n"),
            Answer::Failed("no disk".into())
        );
        assert_eq!(parse_answer(""), Answer::Silent);
    }
}
