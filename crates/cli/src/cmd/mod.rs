//! The box commands, one file per group, and what they share: opening the runtime, parsing
//! `-e`, turning a command's ending into an exit status.

pub mod cp;
pub mod exec;
pub mod info;
pub mod lifecycle;
pub mod ls;
pub mod pull;
pub mod run;
pub mod volume;

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use boxlite::{ExitStatus, Runtime, RuntimeOptions, SupervisorCommand};

use crate::Global;

/// The hidden subcommand this binary serves boxes' supervisors with.
const SUPERVISE: &str = crate::SUPERVISE;

/// The runtime options: the environment's (`BOXLITE_*`), then the flags over them, with this
/// binary as every box's supervisor.
pub fn runtime_options(global: &Global) -> Result<RuntimeOptions> {
    let mut options = RuntimeOptions::from_env();
    if let Some(home) = &global.home {
        options.home = home.clone();
    }
    // An empty flag (--kernel '') means "not set", as an empty variable does.
    if let Some(kernel) = global.kernel.clone().filter(|p| !p.as_os_str().is_empty()) {
        options.kernel = Some(kernel);
    }
    if let Some(initramfs) = global
        .initramfs
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
    {
        options.initramfs = Some(initramfs);
    }
    let exe = std::env::current_exe().context("finding this program to run supervisors")?;
    options.supervisor = Some(SupervisorCommand {
        program: exe,
        args: vec![SUPERVISE.into()],
    });
    options.progress = std::io::stderr().is_terminal();
    let registry = &mut options.registry;
    registry
        .insecure_registries
        .extend(global.insecure_registry.iter().cloned());
    if let Some(mirror) = &global.registry_mirror {
        registry.docker_io_mirror = Some(mirror.clone());
    }
    for ca in &global.registry_ca {
        let pem =
            std::fs::read(ca).with_context(|| format!("reading --registry-ca {}", ca.display()))?;
        registry.extra_ca_pem.push(pem);
    }
    Ok(options)
}

/// Opens the runtime in the chosen home.
pub fn open_runtime(global: &Global) -> Result<Runtime> {
    let options = runtime_options(global)?;
    let home = options.home.clone();
    Runtime::open(options).with_context(|| format!("opening state directory {}", home.display()))
}

/// Parses `-e NAME=VALUE` settings.
pub fn parse_env(settings: &[String]) -> Result<Vec<(String, String)>> {
    settings
        .iter()
        .map(|s| match s.split_once('=') {
            Some((name, value)) => {
                boxlite::validate_env_name(name)?;
                Ok((name.to_string(), value.to_string()))
            }
            None => bail!("-e {s:?}: expected NAME=VALUE"),
        })
        .collect()
}

/// The shell-style exit status of a command that ended so: its code, or 128 + the signal
/// that killed it.
pub fn exit_code(status: &ExitStatus) -> u8 {
    match (status.code, status.signal) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}

/// What starting a command in a box ended with, when the failure is the command's own:
/// docker's 127 (not found) and 126 (cannot be run), with the agent's words.
pub fn command_failure(err: &boxlite::Error) -> Option<(u8, String)> {
    let boxlite::Error::Protocol { source, .. } = err else {
        return None;
    };
    let protocol::Error::Remote { kind, message } = source else {
        return None;
    };
    // The agent's words: shown with their control characters escaped.
    let message = boxlite::printable(message);
    match kind {
        protocol::ErrorKind::NotFound => Some((127, message)),
        protocol::ErrorKind::PermissionDenied => Some((126, message)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let status = |code, signal| ExitStatus {
            code,
            signal,
            timed_out: false,
        };
        assert_eq!(exit_code(&status(Some(0), None)), 0);
        assert_eq!(exit_code(&status(Some(7), None)), 7);
        assert_eq!(exit_code(&status(None, Some(9))), 137);
        assert_eq!(exit_code(&status(None, Some(13))), 141);
    }

    #[test]
    fn env_settings() {
        assert_eq!(
            parse_env(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
        assert!(parse_env(&["A".into()]).is_err());
        assert!(parse_env(&["=1".into()]).is_err());
    }
}
