//! The box's volumes: host directories (virtio-fs) and named volumes (disks) mounted inside
//! the box's root before the workload starts.
//!
//! Each volume's path is resolved inside the root the way every box path is ([`BoxRoot`]:
//! symlinks in the image resolve as if the root were `/`), its missing directories created one
//! at a time, and the filesystem mounted onto the directory's `O_PATH` descriptor through
//! `/proc/self/fd/N`, so neither a symlink nor a concurrent rename in the box can make the
//! agent mount anywhere outside the root. The mounts are made in the agent's own mount
//! namespace, which every execution (chrooted into the root) shares.
//!
//! What was mounted is kept as [`Mounted`] (the mount point's descriptor), and unmounted at
//! shutdown ([`unmount_all`]) before the disk under the root, so a named volume's ext4 is clean
//! for the next box that attaches it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use protocol::{MountSource, VolumeMount};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::{Error, Result};
use crate::root::BoxRoot;

/// The mode of the directories a volume's path creates (root-owned: the agent is root).
const DIR_MODE: u32 = 0o755;

/// A volume this agent mounted.
#[derive(Debug)]
pub struct Mounted {
    /// The volume's path in the box, for messages.
    box_path: String,
    /// The mount point (the directory below the volume): its path in the agent's namespace
    /// is read back from it at unmount time, so a rename in the box since does not matter.
    mount_point: OwnedFd,
}

impl Mounted {
    /// The volume's path in the box.
    pub fn box_path(&self) -> &str {
        &self.box_path
    }
}

/// Mounts `volumes` inside `root` in order, appending each to `mounted` as soon as it is
/// mounted; on the first failure the error names that volume, and the earlier ones stay.
pub fn mount_all(
    root: &BoxRoot,
    volumes: &[VolumeMount],
    mounted: &mut Vec<Mounted>,
) -> Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Unsupported(
            "mounting volumes needs an agent running as root; this one (host test mode, \
             unprivileged) cannot mount: run it as root with --root DIR"
                .into(),
        ));
    }
    if !root.chroot() {
        return Err(Error::Unsupported(
            "mounting volumes needs a box root that executions are chrooted into; this agent \
             serves / itself: give it --root DIR"
                .into(),
        ));
    }
    for volume in volumes {
        mounted.push(mount_one(root, volume)?);
    }
    Ok(())
}

fn mount_one(root: &BoxRoot, volume: &VolumeMount) -> Result<Mounted> {
    let path = volume.path.as_str();
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if volume.read_only {
        flags |= MountFlags::RDONLY;
    }
    let (source, fstype, data, what) = match &volume.source {
        MountSource::Virtiofs { tag } => (
            tag.as_str(),
            "virtiofs",
            "",
            format!("volume {path} (virtio-fs tag {tag:?})"),
        ),
        MountSource::Disk { device, fstype } => {
            let what = format!("volume {path} (disk {device}, {fstype})");
            check_disk(device, fstype, &what)?;
            // A read-only attach must not replay the journal: that would write to the disk.
            let data = if volume.read_only && fstype == "ext4" {
                "noload"
            } else {
                ""
            };
            (device.as_str(), fstype.as_str(), data, what)
        }
    };
    let mount_point = target_dir(root, path, &what)?;
    let target = format!("/proc/self/fd/{}", mount_point.as_raw_fd());
    let data = CString::new(data)
        .map_err(|_| Error::Invalid(format!("the mount options of {what} hold a NUL byte")))?;
    rustix::mount::mount(source, target.as_str(), fstype, flags, data.as_c_str()).map_err(|e| {
        let hint = mount_hint(&volume.source, e);
        Error::io(
            "mounting",
            format_args!("{what} in the box{hint}"),
            e.into(),
        )
    })?;
    Ok(Mounted {
        box_path: path.to_owned(),
        mount_point,
    })
}

/// What to check when a mount fails with `e`.
fn mount_hint(source: &MountSource, e: Errno) -> String {
    match (source, e) {
        (_, Errno::PERM | Errno::ACCESS) => {
            " (mounting needs CAP_SYS_ADMIN in the agent's namespace)".into()
        }
        (MountSource::Virtiofs { .. }, Errno::NODEV) => {
            " (this kernel has no virtio-fs; it needs CONFIG_VIRTIO_FS)".into()
        }
        (MountSource::Virtiofs { .. }, Errno::INVAL | Errno::NOENT) => {
            " (is there a virtio-fs device with that tag? the host must add it to the VM)".into()
        }
        (MountSource::Disk { fstype, .. }, Errno::NODEV) => {
            format!(" (this kernel has no {fstype} support)")
        }
        (MountSource::Disk { fstype, .. }, Errno::INVAL) => {
            format!(" (does the disk hold an {fstype} filesystem?)")
        }
        (_, Errno::BUSY) => " (is it mounted already?)".into(),
        _ => String::new(),
    }
}

/// Checks that a disk volume's device is an attached block device with the filesystem the
/// request says (ext4: its superblock), so the errors say which instead of mount's `EINVAL`.
fn check_disk(device: &str, fstype: &str, what: &str) -> Result<()> {
    let stat = rustix::fs::stat(device).map_err(|e| match e {
        Errno::NOENT | Errno::NXIO => Error::NotFound(format!(
            "{what}: the device {device} does not exist; the host must attach the disk to the VM"
        )),
        e => Error::io("checking", format_args!("the device of {what}"), e.into()),
    })?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::BlockDevice {
        return Err(Error::Invalid(format!(
            "{what}: {device} is not a block device"
        )));
    }
    if fstype == "ext4" {
        let has = crate::init::has_ext4_superblock(Path::new(device))
            .map_err(|e| Error::io("reading the superblock of", format_args!("{what}"), e))?;
        if !has {
            return Err(Error::Invalid(format!(
                "{what}: the disk has no ext4 filesystem; the host formats a named volume \
                 (mkfs.ext4) when it creates it, and the agent does not format disks"
            )));
        }
    }
    Ok(())
}

/// The directory at `path` in the box, created (with its missing parents, mode 0755) if
/// absent, as an `O_PATH` descriptor. Every prefix is resolved from the root with
/// `RESOLVE_IN_ROOT`, so a symlink may redirect within the box, never out of it, and each
/// directory is created in the directory its parent resolved to.
fn target_dir(root: &BoxRoot, path: &str, what: &str) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let not_dir = |prefix: &str| {
        Error::Invalid(format!(
            "{what}: {prefix} in the box is not a directory (a file is there); a volume \
             mounts on a directory: remove the file or choose another path"
        ))
    };
    let mut dir = root
        .open_in("/", flags, Mode::empty())
        .map_err(|e| Error::io("opening", "the box's root", e.into()))?;
    let mut prefix = String::with_capacity(path.len());
    for name in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(name);
        dir = match root.open_in(&prefix, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // `name` is one component: mkdirat neither follows nor crosses anything.
                match rustix::fs::mkdirat(&dir, name, Mode::from_bits_truncate(DIR_MODE)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(Errno::NOTDIR) => return Err(not_dir(&prefix)),
                    Err(e) => {
                        return Err(Error::io(
                            "creating",
                            format_args!("{prefix} in the box for {what}"),
                            e.into(),
                        ));
                    }
                }
                match root.open_in(&prefix, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    // It exists (mkdirat said so) yet does not resolve: a dangling symlink.
                    Err(Errno::NOENT) => {
                        return Err(Error::Invalid(format!(
                            "{what}: {prefix} in the box is a symlink to nothing; create its \
                             target or choose another path"
                        )));
                    }
                    Err(Errno::NOTDIR) => return Err(not_dir(&prefix)),
                    Err(e) => {
                        return Err(Error::io(
                            "opening",
                            format_args!("{prefix} in the box for {what}"),
                            e.into(),
                        ));
                    }
                }
            }
            Err(Errno::NOTDIR) => return Err(not_dir(&prefix)),
            Err(Errno::LOOP) => {
                return Err(Error::Invalid(format!(
                    "{what}: {prefix} in the box is a loop of symlinks"
                )));
            }
            Err(e) => {
                return Err(Error::io(
                    "opening",
                    format_args!("{prefix} in the box for {what}"),
                    e.into(),
                ));
            }
        };
    }
    Ok(dir)
}

/// Unmounts `volumes`, last mounted first (children before their parents); one that is busy
/// is detached lazily. Failures are printed: at shutdown there is nobody to tell.
pub fn unmount_all(volumes: Vec<Mounted>) {
    for volume in volumes.into_iter().rev() {
        let Mounted {
            box_path,
            mount_point,
        } = volume;
        // The kernel's name for the mount point now, in the agent's namespace.
        let link = format!("/proc/self/fd/{}", mount_point.as_raw_fd());
        let target: PathBuf = match std::fs::read_link(&link) {
            Ok(target) => target,
            Err(e) => {
                eprintln!("boxlite-guest: unmounting volume {box_path}: {e}");
                continue;
            }
        };
        // Our descriptor is on the directory below, but let nothing of ours hold the mount.
        drop(mount_point);
        // NOFOLLOW: the path is the kernel's, so a last component that became a symlink is
        // the box's doing.
        let plain = rustix::mount::unmount(&target, UnmountFlags::NOFOLLOW);
        if let Err(e) = plain {
            if let Err(lazy) =
                rustix::mount::unmount(&target, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
            {
                eprintln!(
                    "boxlite-guest: unmounting volume {box_path} at {}: {e}; detaching: {lazy}",
                    target.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root(dir: &Path) -> BoxRoot {
        BoxRoot::open(dir, true).unwrap()
    }

    #[test]
    fn target_dirs_are_created_inside_the_root_whatever_the_links() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("file"), "x").unwrap();
        symlink("/", r.join("escape")).unwrap();
        symlink("/../../etc", r.join("etc-link")).unwrap();
        symlink("/nowhere", r.join("dangling")).unwrap();
        let box_root = root(r);

        target_dir(&box_root, "/data/vol", "v").unwrap();
        assert!(r.join("data/vol").is_dir());
        // A link to / means the box's root, not the agent's.
        let marker = format!("boxlite-volume-test-{}", std::process::id());
        target_dir(&box_root, &format!("/escape/{marker}/vol"), "v").unwrap();
        assert!(r.join(&marker).join("vol").is_dir());
        assert!(!Path::new("/").join(&marker).exists());
        target_dir(&box_root, "/etc-link/app", "v").unwrap();
        assert!(r.join("etc/app").is_dir());
        // Already there: fine.
        target_dir(&box_root, "/data/./vol/", "v").unwrap();

        let e = target_dir(&box_root, "/file", "volume /file").unwrap_err();
        assert_eq!(e.kind(), protocol::ErrorKind::Invalid);
        assert!(
            e.to_string()
                .contains("/file in the box is not a directory"),
            "{e}"
        );
        let e = target_dir(&box_root, "/file/below", "v").unwrap_err();
        assert!(
            e.to_string()
                .contains("/file in the box is not a directory"),
            "{e}"
        );
        let e = target_dir(&box_root, "/dangling/x", "v").unwrap_err();
        assert!(e.to_string().contains("symlink to nothing"), "{e}");
    }

    #[test]
    fn disk_checks_name_the_volume_and_the_device() {
        let e = check_disk("/dev/vdzzz", "ext4", "volume /db (disk /dev/vdzzz, ext4)").unwrap_err();
        assert_eq!(e.kind(), protocol::ErrorKind::NotFound);
        let text = e.to_string();
        assert!(
            text.contains("volume /db") && text.contains("attach"),
            "{text}"
        );
        let e = check_disk("/dev/null", "ext4", "volume /db").unwrap_err();
        assert_eq!(e.kind(), protocol::ErrorKind::Invalid);
        assert!(e.to_string().contains("not a block device"), "{e}");
    }

    #[test]
    fn an_unprivileged_or_unchrooted_agent_says_unsupported() {
        let tmp = tempfile::tempdir().unwrap();
        let volume = VolumeMount {
            source: MountSource::Virtiofs { tag: "t".into() },
            path: "/data".into(),
            read_only: false,
        };
        let plain = BoxRoot::open(tmp.path(), false).unwrap();
        let mut mounted = Vec::new();
        let e = mount_all(&plain, std::slice::from_ref(&volume), &mut mounted).unwrap_err();
        assert_eq!(e.kind(), protocol::ErrorKind::Unsupported, "{e}");
        assert!(mounted.is_empty());
        mount_all(&plain, &[], &mut mounted).unwrap();
    }
}
