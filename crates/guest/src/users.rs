//! Users and groups of the box, from its own `/etc/passwd` and `/etc/group`.
//!
//! The agent parses these files itself rather than asking libc (NSS would read the agent's own
//! root, not the box's, and a static binary cannot load NSS modules anyway). Only the files are
//! consulted, as in Docker and runc: an image that gets its users from LDAP is out of scope.

use crate::error::{Error, Result};

/// The largest `/etc/passwd` or `/etc/group` read: real ones are a few KiB; an image could
/// ship a huge one to make the agent allocate without bound.
pub const MAX_DB_FILE_LEN: u64 = 4 * 1024 * 1024;

/// The most groups a process can have (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The home directory.
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group name.
    pub name: String,
    /// The group id.
    pub gid: u32,
    /// Login names of its supplementary members.
    pub members: Vec<String>,
}

/// Who an execution runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Every group id the process gets (primary first, then supplementary, no duplicates).
    pub groups: Vec<u32>,
    /// The home directory from `/etc/passwd`, when the user has an entry (for `HOME`).
    pub home: Option<String>,
}

/// Parses `/etc/passwd`, skipping lines that are comments, blank or malformed (as glibc does:
/// one bad line must not hide every user).
pub fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(Passwd {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group`, skipping lines that are comments, blank or malformed.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(Group {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves a user spec (`name`, `uid`, `name:group`, `uid:gid`; `None` for root) the way
/// Docker does: a name must exist in `passwd`; a uid that has no entry runs with gid 0 unless a
/// group is given; supplementary groups are every group that lists the user's name.
pub fn resolve(spec: Option<&str>, passwd: &[Passwd], group: &[Group]) -> Result<Identity> {
    let spec = spec.unwrap_or("").trim();
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd
            .iter()
            .find(|p| p.uid == uid)
            .cloned()
            .or(Some(Passwd {
                name: String::new(),
                uid,
                gid: 0,
                home: String::new(),
            })),
        Err(_) => passwd.iter().find(|p| p.name == user).cloned(),
    };
    let entry = match entry {
        Some(e) => e,
        None if user == "root" => Passwd {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
        },
        None => {
            return Err(Error::NotFound(format!(
                "user {user:?} is not in the box's /etc/passwd; give a user listed there or a \
                 numeric uid"
            )));
        }
    };
    let gid = match grp {
        None | Some("") => entry.gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group.iter().find(|e| e.name == g).map(|e| e.gid).ok_or_else(|| {
                Error::NotFound(format!(
                    "group {g:?} is not in the box's /etc/group; give a group listed there or a \
                     numeric gid"
                ))
            })?,
        },
    };
    let mut groups = vec![gid];
    if !entry.name.is_empty() {
        for g in group {
            if g.members.contains(&entry.name) && !groups.contains(&g.gid) {
                if groups.len() == MAX_GROUPS {
                    return Err(Error::Invalid(format!(
                        "user {:?} is in more than {MAX_GROUPS} groups, the kernel's limit",
                        entry.name
                    )));
                }
                groups.push(g.gid);
            }
        }
    }
    Ok(Identity {
        uid: entry.uid,
        gid,
        groups,
        home: (!entry.home.is_empty()).then_some(entry.home),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
bad:x:notanumber:1::/:/bin/sh
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
nohome:x:1001:1001:::/bin/sh
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
adm:x:4:syslog,alice
alice:x:1000:
staff:x:50: alice , bob
nohome:x:1001:
wheel:x:10:alice
dup:x:1000:alice
";

    fn dbs() -> (Vec<Passwd>, Vec<Group>) {
        (parse_passwd(PASSWD), parse_group(GROUP))
    }

    #[test]
    fn parses_skipping_bad_lines() {
        let (p, g) = dbs();
        let names: Vec<_> = p.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "alice", "nohome"]);
        assert_eq!(p[2].home, "/home/alice");
        assert_eq!(p[2].gid, 1000);
        let staff = g.iter().find(|e| e.name == "staff").unwrap();
        assert_eq!(staff.members, ["alice", "bob"]);
        assert_eq!(g.len(), 8);
    }

    #[test]
    fn resolves_names_with_supplementary_groups() {
        let (p, g) = dbs();
        let id = resolve(Some("alice"), &p, &g).unwrap();
        assert_eq!(id.uid, 1000);
        assert_eq!(id.gid, 1000);
        assert_eq!(id.groups, [1000, 4, 50, 10]);
        assert_eq!(id.home.as_deref(), Some("/home/alice"));
    }

    #[test]
    fn default_is_root() {
        let (p, g) = dbs();
        for spec in [None, Some(""), Some("root"), Some("0")] {
            let id = resolve(spec, &p, &g).unwrap();
            assert_eq!((id.uid, id.gid, id.groups), (0, 0, vec![0]), "{spec:?}");
        }
        let id = resolve(Some("root"), &[], &[]).unwrap();
        assert_eq!((id.uid, id.gid), (0, 0));
    }

    #[test]
    fn numeric_uids_use_their_entry_or_gid_zero() {
        let (p, g) = dbs();
        let id = resolve(Some("1000"), &p, &g).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.groups, [1000, 4, 50, 10]);
        let id = resolve(Some("4242"), &p, &g).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups, id.home),
            (4242, 0, vec![0], None)
        );
        let id = resolve(Some("4242:77"), &p, &g).unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (4242, 77, vec![77]));
        let id = resolve(Some("1001"), &p, &g).unwrap();
        assert_eq!(id.home, None);
    }

    #[test]
    fn explicit_groups_by_name_or_number() {
        let (p, g) = dbs();
        let id = resolve(Some("alice:staff"), &p, &g).unwrap();
        assert_eq!(id.gid, 50);
        assert_eq!(id.groups, [50, 4, 10, 1000]);
        let id = resolve(Some("daemon:4"), &p, &g).unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (1, 4, vec![4]));
        let id = resolve(Some("alice:"), &p, &g).unwrap();
        assert_eq!(id.gid, 1000);
    }

    #[test]
    fn unknown_names_are_not_found() {
        let (p, g) = dbs();
        let err = resolve(Some("mallory"), &p, &g).unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::NotFound);
        assert!(err.to_string().contains("\"mallory\""), "{err}");
        assert!(err.to_string().contains("/etc/passwd"), "{err}");
        let err = resolve(Some("alice:nogroup"), &p, &g).unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::NotFound);
        assert!(err.to_string().contains("/etc/group"), "{err}");
    }
}
