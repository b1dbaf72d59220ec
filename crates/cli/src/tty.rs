//! The local terminal: its size, and raw mode for `-it` that is always undone.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Context, Result};
use rustix::termios::{self, OptionalActions, Termios};

/// The size a pseudo-terminal gets when no local terminal says otherwise.
const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// The local terminal's size (rows, columns): stdout's, else stdin's, else 24 × 80.
pub fn size() -> (u16, u16) {
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    [stdout.as_fd(), stdin.as_fd()]
        .into_iter()
        .find_map(fd_size)
        .unwrap_or(DEFAULT_SIZE)
}

/// The size of the terminal on `fd`, if it is one and says a size (a fresh pty says 0 × 0).
fn fd_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let ws = termios::tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Raw mode on stdin's terminal while alive; the saved settings come back when it is dropped,
/// which happens on every way out of the command: return, error, or panic unwinding (and
/// the signals that would end us are caught and turned into returns, see `attach`).
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode: keys go to the box as typed (Ctrl-C included,
    /// so the box's terminal makes the signal), no local echo or line editing.
    pub fn enable() -> Result<RawMode> {
        let stdin = std::io::stdin();
        anyhow::ensure!(
            stdin.is_terminal(),
            "the input device is not a terminal; drop -t or run in one"
        );
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Drain: output already written should be shown under the settings it was meant for.
        let _ = termios::tcsetattr(
            std::io::stdin().as_fd(),
            OptionalActions::Drain,
            &self.saved,
        );
    }
}

/// Echo off on stdin's terminal while alive, for typing a password.
pub struct NoEcho {
    saved: Termios,
}

impl NoEcho {
    /// Turns echo off (line editing stays on, so Enter ends the line).
    pub fn enable() -> Result<NoEcho> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(termios::LocalModes::ECHO);
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &quiet)
            .context("turning the terminal's echo off")?;
        Ok(NoEcho { saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}
