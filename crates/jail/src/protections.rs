//! The report: one entry per protection, active or not, and why.

use serde::{Deserialize, Serialize};

/// The environment is emptied but for what the jail passes.
pub const ENVIRONMENT: &str = "environment";
/// Only the descriptors passed on purpose (and 0, 1, 2) survive `execve`.
pub const DESCRIPTORS: &str = "descriptors";
/// `PR_SET_NO_NEW_PRIVS`: no set-uid, set-gid or file capabilities gained by `execve`.
pub const NO_NEW_PRIVS: &str = "no-new-privs";
/// Resource limits (core dumps off, descriptors and threads bounded).
pub const RLIMITS: &str = "rlimits";
/// An unprivileged user and group instead of root.
pub const IDENTITY: &str = "identity";
/// New mount, IPC, UTS, network (empty) and cgroup namespaces, in a new user namespace when
/// not root.
pub const NAMESPACES: &str = "namespaces";
/// A new PID namespace.
pub const PID_NAMESPACE: &str = "pid-namespace";
/// Landlock: the files the process may use, and its signal and abstract-socket scope.
pub const LANDLOCK: &str = "landlock";
/// A cgroup (v2) with memory and CPU limits.
pub const CGROUP: &str = "cgroup";
/// A seccomp system-call filter (installed by the jailed program itself; see
/// [`Protections::set`]).
pub const SECCOMP: &str = "seccomp";

/// One protection: whether it is active and, either way, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// Its name (one of this module's constants).
    pub name: String,
    /// Whether it applies.
    pub active: bool,
    /// What it does here, or why it does not apply.
    pub reason: String,
}

/// Every protection a jail applies or would apply, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Protections(Vec<Protection>);

impl Protections {
    /// Records `name` (replacing an earlier entry of that name, keeping its place).
    pub fn set(&mut self, name: &str, active: bool, reason: impl Into<String>) {
        let entry = Protection {
            name: name.to_string(),
            active,
            reason: reason.into(),
        };
        match self.0.iter_mut().find(|p| p.name == name) {
            Some(p) => *p = entry,
            None => self.0.push(entry),
        }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Protection> {
        self.0.iter().find(|p| p.name == name)
    }

    /// Whether `name` is recorded active.
    pub fn is_active(&self, name: &str) -> bool {
        self.get(name).is_some_and(|p| p.active)
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Protection> {
        self.0.iter()
    }
}

impl IntoIterator for Protections {
    type Item = Protection;
    type IntoIter = std::vec::IntoIter<Protection>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_in_place_and_serialises_as_a_list() {
        let mut p = Protections::default();
        p.set(LANDLOCK, false, "not yet");
        p.set(SECCOMP, true, "filter");
        p.set(LANDLOCK, true, "ABI 7");
        let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, [LANDLOCK, SECCOMP]);
        assert!(p.is_active(LANDLOCK) && !p.is_active(CGROUP));
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.starts_with("[{\"name\":\"landlock\",\"active\":true"),
            "{json}"
        );
        let back: Protections = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
