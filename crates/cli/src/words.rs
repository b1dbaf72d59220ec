//! The runtime's typed errors in this command's words: its flags and subcommands.

use boxlite::{Artefact, Error, Needs};

/// The message of `err` as this command words it: an option named by its flag, and the
/// command that fixes the problem where there is one.
pub fn reword(err: &Error) -> Option<String> {
    match err {
        Error::InvalidOption {
            option,
            value,
            reason,
        } => Some(format!("{} {value}: {reason}", flag(option))),
        Error::InvalidState { needs, .. } => {
            let fix = match needs {
                Needs::NotRunning => "`boxlite stop` it, or `boxlite rm -f` it",
                Needs::Running => "`boxlite start` it first",
                Needs::BaseDisk => "`boxlite rm` it and create it again",
                _ => return None,
            };
            Some(format!("{err} ({fix})"))
        }
        Error::NoSuchBox(_) => Some(format!("{err} (see `boxlite ls -a`)")),
        Error::NoSuchVolume(name) => Some(format!(
            "no such volume: {name} (create it with `boxlite volume create {name}`, or see \
             `boxlite volume ls`)"
        )),
        Error::EngineUnavailable { engine, .. } if engine == "kvm" => Some(format!(
            "{err}; use --engine qemu (or set BOXLITE_FORCE_KVM=1 to try anyway)"
        )),
        Error::Missing {
            what: Artefact::Kernel,
            ..
        } => Some(format!(
            "{err}; or pass --kernel FILE (or set BOXLITE_KERNEL)"
        )),
        Error::Missing {
            what: Artefact::Initramfs,
            ..
        } => Some(format!(
            "{err}; or pass --initramfs FILE (or set BOXLITE_INITRAMFS)"
        )),
        Error::Boot { message, console } if message.contains("did not answer within") => {
            let mut text = format!("{message} (set BOXLITE_BOOT_TIMEOUT, in seconds)");
            if !console.trim().is_empty() {
                text.push_str("\n--- end of the console log ---\n");
                text.push_str(console.trim_end());
            }
            Some(text)
        }
        _ => None,
    }
}

/// The flag that sets a [`boxlite::BoxOptions`] field.
fn flag(option: &str) -> &str {
    match option {
        "cpus" => "--cpus",
        "memory_mib" => "--memory",
        "disk_size_mib" => "disk size",
        "name" => "box name",
        "env" => "-e",
        "working_dir" => "--workdir",
        "user" => "--user",
        "engine" => "--engine",
        "pull" => "--pull",
        "volume" | "volumes" => "-v",
        "volume size" => "--size",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_named_by_their_flags() {
        let mut options = boxlite::BoxOptions::new("img");
        options.cpus = 0;
        let err = options.validate().unwrap_err();
        let text = reword(&err).unwrap();
        assert!(text.starts_with("--cpus 0: "), "{text}");
        let err = "warp".parse::<boxlite::EngineKind>().unwrap_err();
        let text = reword(&err).unwrap();
        assert!(text.contains("--engine \"warp\""), "{text}");
        assert!(text.contains("auto, kvm or qemu"), "{text}");
    }
}
