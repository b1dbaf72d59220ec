//! Copy a directory tree into another with everything preserved, fast, and without subprocesses.
//!
//! What is preserved: file data (holes included where cheap), directories, symlinks (copied as
//! links, never followed, dangling and self-referencing ones included), hard links within the
//! copy, fifos, character and block devices, unix socket nodes (recreated with `mknod`, counted
//! in [`Report::specials`]), owner and group, mode bits including setuid/setgid/sticky,
//! access and modification times to the nanosecond (symlinks and directories too), and
//! extended attributes of every namespace the caller can read (`user.*`, `trusted.*`,
//! `security.capability`, ACLs).
//!
//! How data moves, decided once per pair of source and destination filesystem
//! ([`Strategy`]): a reflink (`FICLONE`) where the filesystem shares extents (XFS, btrfs), else
//! `copy_file_range`, else `pread`/`pwrite`. A pair that answers "unsupported" is not asked again.
//!
//! The destination is never written through a symlink: files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, and whatever is in the way (a symlink, a file, a directory) is
//! removed first. Metadata goes on in a fixed order, owner → extended attributes → mode → times,
//! because chown clears setuid bits and file capabilities and any write moves mtime; directory
//! metadata is applied last, deepest first.
//!
//! Entry points: [`copy_tree`] for a whole tree, [`Copier`] for callers that pick each entry's
//! source themselves (rootfs assembly from layers), [`remove_tree`] to delete.
//!
//! ```no_run
//! let report = fastcopy::copy_tree(
//!     "/var/lib/layers/1".as_ref(),
//!     "/var/lib/rootfs".as_ref(),
//!     &fastcopy::Options::default(),
//!     &|rel| rel.starts_with("proc"),
//! )?;
//! println!("{} files, mostly by {:?}", report.files, report.strategy());
//! # Ok::<(), fastcopy::Error>(())
//! ```

mod copier;
mod data;
mod error;
mod meta;
mod report;
mod tree;
mod xattr;

#[cfg(test)]
mod testutil;

pub use copier::{Copier, Options};
pub use data::Strategy;
pub use error::{Error, Op, Result};
pub use report::Report;
pub use tree::{copy_tree, remove_tree};
