//! Running a long build with its output in a log file and a short progress display.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sh;

/// How often a progress line is printed when stderr is not a terminal (CI logs).
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// Lines of the log shown when the command fails.
const TAIL_LINES: usize = 60;
/// Widest spinner line, so it never wraps on a normal terminal.
const SPINNER_WIDTH: usize = 100;

/// Runs `cmd` with stdout and stderr in `log`, showing the latest build step as it goes.
///
/// `strip` is removed from the front of paths in the displayed steps (kbuild prints some
/// absolute paths). On failure the log's tail is printed and the error names the log.
pub fn run_logged(cmd: &mut Command, log: &Path, label: &str, strip: &str) -> Result<()> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    eprintln!("$ {}", sh::display(cmd));
    eprintln!("  (full log: {})", log.display());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", sh::display(cmd)))?;
    let status = watch(&mut child, log, label, strip);
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- last lines of {} ---", log.display());
        for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
            eprintln!("{line}");
        }
        bail!("{label} failed ({status}); full log: {}", log.display());
    }
    Ok(())
}

fn watch(
    child: &mut std::process::Child,
    log: &Path,
    label: &str,
    strip: &str,
) -> Result<ExitStatus> {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_report = start;
    let mut reader = File::open(log)?;
    let mut partial = Vec::new();
    let mut step = String::from("starting");
    let spinner = ['|', '/', '-', '\\'];
    for tick in 0usize.. {
        if let Some(status) = child.try_wait()? {
            if tty {
                eprint!("\r\x1b[2K");
            }
            eprintln!("{label}: finished in {}", elapsed(start));
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut chunk = Vec::new();
        reader.read_to_end(&mut chunk)?;
        partial.extend_from_slice(&chunk);
        if let Some(end) = partial.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = partial.drain(..=end).collect();
            if let Some(found) = String::from_utf8_lossy(&complete)
                .lines()
                .rev()
                .find_map(|l| step_of(l, strip))
            {
                step = found;
            }
        }
        if tty {
            let line = format!(
                "{} {label} {} {step}",
                spinner[tick % spinner.len()],
                elapsed(start)
            );
            let line: String = line.chars().take(SPINNER_WIDTH).collect();
            eprint!("\r\x1b[2K{line}");
        } else if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            eprintln!("{label}: {} elapsed, at {step}", elapsed(start));
        }
    }
    unreachable!("the loop above only ends by returning")
}

/// The build step a kbuild line announces (`  CC      kernel/fork.o`), if it is one.
fn step_of(line: &str, strip: &str) -> Option<String> {
    let rest = line.strip_prefix("  ")?;
    let (verb, target) = rest.split_once(' ')?;
    if verb.is_empty()
        || !verb
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let target = target.trim();
    let target = target.strip_prefix(strip).unwrap_or(target);
    let target = target.trim_start_matches('/');
    Some(format!("{verb} {target}"))
}

fn elapsed(since: Instant) -> String {
    let s = since.elapsed().as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kbuild_steps() {
        assert_eq!(
            step_of("  CC      kernel/fork.o", "/x").as_deref(),
            Some("CC kernel/fork.o")
        );
        assert_eq!(
            step_of("  LD      /x/tree/tools/objtool/objtool", "/x/tree").as_deref(),
            Some("LD tools/objtool/objtool")
        );
        assert_eq!(step_of("make[1]: Entering directory", "/x"), None);
        assert_eq!(step_of("  warning: something", "/x"), None);
        assert_eq!(
            step_of("Kernel: arch/x86/boot/bzImage is ready", "/x"),
            None
        );
    }

    #[test]
    fn a_failing_command_fails_and_keeps_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let err = run_logged(
            Command::new("sh").args(["-c", "echo '  CC      a.o'; echo boom >&2; exit 3"]),
            &log,
            "test build",
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test build failed"), "{err}");
        assert!(err.contains(&log.display().to_string()), "{err}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("boom") && text.contains("CC      a.o"),
            "{text}"
        );
        run_logged(Command::new("true").arg("x"), &log, "ok", "").unwrap();
    }
}
