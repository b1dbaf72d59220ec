//! Test helpers: fixture trees, a tree comparison, and loop-mounted filesystems.

pub(crate) mod compare;
pub(crate) mod fixture;
pub(crate) mod mount;

/// True when running as root; otherwise prints why `test` is skipped.
pub(crate) fn root_or_skip(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped {test}: needs root (mount, mknod, chown, trusted.* xattrs)");
    }
    root
}
