//! The agent's boot settings, read from the kernel command line.
//!
//! The host (engine) appends `boxlite.*` keys to the kernel command line; the kernel leaves keys
//! with a dot alone (they are module parameters of a module that does not exist), so they reach
//! `/proc/cmdline` untouched. Every key is optional:
//!
//! | key                    | default      | meaning                                                        |
//! |------------------------|--------------|----------------------------------------------------------------|
//! | `boxlite.root`         | `/dev/vda`   | the image's base disk, mounted read-only (overlay lower layer) |
//! | `boxlite.rootfstype`   | `ext4`       | its filesystem type                                            |
//! | `boxlite.data`         | `/dev/vdb`   | the box's writable disk (overlay upper); `tmpfs` for none: changes then live in memory and vanish at shutdown |
//! | `boxlite.datafstype`   | `ext4`       | its filesystem type (the host formats it when the box is created; the agent never formats) |
//! | `boxlite.hostname`     | `boxlite`    | the hostname, also written to the box's `/etc/hosts`           |
//! | `boxlite.dns`          | (none)       | comma-separated nameserver addresses for the box's `/etc/resolv.conf` (at most 3); without it the image's file is kept |
//! | `boxlite.net`          | (none)       | `ADDR/PREFIX,GATEWAY,MTU` (IPv4, e.g. `10.0.2.15/24,10.0.2.2,1500`): the network card's address, the default route and the link MTU; without it the card (if any) stays down |
//! | `boxlite.hostaddr`     | (none)       | an IPv4 address the box's `/etc/hosts` maps `host.boxlite.internal` to |
//! | `boxlite.port`         | `/dev/hvc0`  | what carries the protocol: a device path, or the name of a virtio-serial port (e.g. `agent`, found through `/sys/class/virtio-ports/*/name`) |
//!
//! Example: `console=ttyS0 reboot=t boxlite.root=/dev/vda boxlite.data=/dev/vdb
//! boxlite.hostname=web-1 boxlite.net=10.0.2.15/24,10.0.2.2,1500 boxlite.dns=10.0.2.3
//! boxlite.hostaddr=10.0.2.2`.
//!
//! Under QEMU prefer a named virtio-serial port (`-device virtserialport,name=agent` with
//! `boxlite.port=agent`) over a `virtconsole` (`/dev/hvc0`): QEMU silently drops console output
//! the host socket cannot take at once, which corrupts the stream as soon as the host reads
//! slower than the guest writes; serial ports are flow-controlled.
//!
//! The kernel console must not be the protocol port (`console=hvc0` would mix kernel messages
//! into the protocol stream): use `ttyS0` or another port. Values may be double-quoted as the
//! kernel allows (`key="a b"`). Unknown `boxlite.*` keys are reported as warnings and ignored, so
//! an older agent boots with a newer host; a malformed value is an error, because it means a
//! host bug that would otherwise surface later as a confusing failure.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The longest `/proc/cmdline` read; x86's `COMMAND_LINE_SIZE` is 2048 and no architecture
/// goes beyond a few KiB, so anything longer is not a kernel command line.
pub const MAX_CMDLINE_LEN: usize = 64 * 1024;

/// The most nameservers in `resolv.conf`: glibc's `MAXNS` ignores any after the third.
pub const MAX_NAMESERVERS: usize = 3;

/// The longest hostname Linux accepts (`__NEW_UTS_LEN`).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// Where the box's writable layer lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDisk {
    /// A block device with a filesystem made by the host.
    Device {
        /// The device node, e.g. `/dev/vdb`.
        path: PathBuf,
        /// Its filesystem type, e.g. `ext4`.
        fstype: String,
    },
    /// No disk: the writable layer is a tmpfs and is lost at shutdown.
    Tmpfs,
}

/// The character device that carries the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    /// A device node, e.g. `/dev/hvc0`.
    Device(PathBuf),
    /// A virtio-serial port with this name (the host's `virtserialport,name=…`).
    Named(String),
}

/// The longest virtio-serial port name accepted (real names are a word or two).
pub const MAX_PORT_NAME_LEN: usize = 64;

/// The smallest MTU IPv4 allows (RFC 791: every host must take 68-byte datagrams).
pub const MIN_MTU: u16 = 68;

/// The network card's settings (`boxlite.net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// The card's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length (1 to 31: the gateway must be on the subnet).
    pub prefix: u8,
    /// The default route's next hop, on the subnet.
    pub gateway: Ipv4Addr,
    /// The link MTU.
    pub mtu: u16,
}

impl NetConfig {
    /// The subnet mask of [`NetConfig::prefix`], e.g. 255.255.255.0 for 24.
    pub fn netmask(&self) -> Ipv4Addr {
        mask(self.prefix)
    }
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

/// The agent's settings for one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    /// The image's read-only base disk.
    pub root: PathBuf,
    /// The base disk's filesystem type.
    pub root_fstype: String,
    /// The box's writable layer.
    pub data: DataDisk,
    /// The box's hostname.
    pub hostname: String,
    /// Nameservers for the box's `/etc/resolv.conf`; empty keeps the image's file.
    pub dns: Vec<IpAddr>,
    /// What carries the protocol.
    pub port: Port,
    /// The network card's settings; `None` leaves it down (only loopback works).
    pub net: Option<NetConfig>,
    /// The address `host.boxlite.internal` names in the box's `/etc/hosts`.
    pub host_addr: Option<Ipv4Addr>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            root: PathBuf::from("/dev/vda"),
            root_fstype: "ext4".into(),
            data: DataDisk::Device {
                path: PathBuf::from("/dev/vdb"),
                fstype: "ext4".into(),
            },
            hostname: "boxlite".into(),
            dns: Vec::new(),
            port: Port::Device(PathBuf::from("/dev/hvc0")),
            net: None,
            host_addr: None,
        }
    }
}

/// Parses a kernel command line into the boot settings and warnings about keys it ignored.
pub fn parse(cmdline: &str) -> Result<(BootConfig, Vec<String>)> {
    if cmdline.len() > MAX_CMDLINE_LEN {
        return Err(invalid(format!(
            "the kernel command line is {} bytes, over the {MAX_CMDLINE_LEN}-byte limit",
            cmdline.len()
        )));
    }
    let mut config = BootConfig::default();
    let mut warnings = Vec::new();
    let (mut data, mut data_fstype) = (None, None);
    for word in words(cmdline) {
        let Some(key) = word.strip_prefix("boxlite.") else {
            continue;
        };
        let Some((key, value)) = key.split_once('=') else {
            warnings.push(format!("boxlite.{key}: ignored, it has no `=value`"));
            continue;
        };
        match key {
            "root" => config.root = device(key, value)?,
            "rootfstype" => config.root_fstype = fstype(key, value)?,
            "data" if value == "tmpfs" => data = Some(None),
            "data" => data = Some(Some(device(key, value)?)),
            "datafstype" => data_fstype = Some(fstype(key, value)?),
            "hostname" => config.hostname = hostname(value)?,
            "dns" => config.dns = nameservers(value)?,
            "port" if value.starts_with('/') => config.port = Port::Device(device(key, value)?),
            "port" => config.port = Port::Named(port_name(value)?),
            "net" => config.net = Some(net(value)?),
            "hostaddr" => config.host_addr = Some(ipv4(key, value)?),
            _ => warnings.push(format!("boxlite.{key}: unknown key, ignored")),
        }
    }
    let fstype = data_fstype.unwrap_or_else(|| "ext4".into());
    config.data = match data {
        Some(None) => DataDisk::Tmpfs,
        Some(Some(path)) => DataDisk::Device { path, fstype },
        None => DataDisk::Device {
            path: PathBuf::from("/dev/vdb"),
            fstype,
        },
    };
    Ok((config, warnings))
}

/// The command line's words, with the kernel's double-quote rule: quotes group spaces and are
/// removed (`a="b c"` is the word `a=b c`).
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

fn invalid(message: String) -> Error {
    Error::Invalid(message)
}

fn device(key: &str, value: &str) -> Result<PathBuf> {
    let ok = value.starts_with("/dev/")
        && value.len() > 5
        && !value.split('/').any(|c| c == "..")
        && value.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(invalid(format!(
            "boxlite.{key}={value:?}: expected a device path under /dev, like /dev/vdb"
        )));
    }
    Ok(PathBuf::from(value))
}

fn fstype(key: &str, value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        return Err(invalid(format!(
            "boxlite.{key}={value:?}: expected a filesystem type name, like ext4"
        )));
    }
    Ok(value.to_owned())
}

fn port_name(value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_PORT_NAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(invalid(format!(
            "boxlite.port={value:?}: expected a device path under /dev or a virtio-serial port \
             name of letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(value.to_owned())
}

fn hostname(value: &str) -> Result<String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if value.is_empty() || value.len() > MAX_HOSTNAME_LEN || !value.split('.').all(label_ok) {
        return Err(invalid(format!(
            "boxlite.hostname={value:?}: expected up to {MAX_HOSTNAME_LEN} characters of \
             dot-separated labels of letters, digits and inner hyphens"
        )));
    }
    Ok(value.to_owned())
}

fn ipv4(key: &str, value: &str) -> Result<Ipv4Addr> {
    value.parse().map_err(|_| {
        invalid(format!(
            "boxlite.{key}={value:?}: expected an IPv4 address, like 10.0.2.2"
        ))
    })
}

/// Parses `ADDR/PREFIX,GATEWAY,MTU`; the gateway must be another address on the subnet, or
/// the default route through it could not be added.
fn net(value: &str) -> Result<NetConfig> {
    let bad = |why: &str| {
        invalid(format!(
            "boxlite.net={value:?}: {why} (expected ADDR/PREFIX,GATEWAY,MTU, like \
             10.0.2.15/24,10.0.2.2,1500)"
        ))
    };
    let mut fields = value.split(',');
    let (Some(cidr), Some(gateway), Some(mtu), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad("not three comma-separated fields"));
    };
    let (address, prefix) = cidr.split_once('/').ok_or_else(|| bad("no /PREFIX"))?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad("bad address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=31).contains(p))
        .ok_or_else(|| bad("the prefix must be 1 to 31"))?;
    let gateway: Ipv4Addr = gateway.parse().map_err(|_| bad("bad gateway"))?;
    let m = u32::from(mask(prefix));
    if gateway == address || u32::from(gateway) & m != u32::from(address) & m {
        return Err(bad("the gateway must be another address on the subnet"));
    }
    let mtu: u16 = mtu
        .parse()
        .ok()
        .filter(|&m| m >= MIN_MTU)
        .ok_or_else(|| bad("the MTU must be 68 to 65535"))?;
    Ok(NetConfig {
        address,
        prefix,
        gateway,
        mtu,
    })
}

fn nameservers(value: &str) -> Result<Vec<IpAddr>> {
    let list = value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| {
                invalid(format!(
                    "boxlite.dns: {s:?} is not an IP address (expected e.g. 10.0.2.3,1.1.1.1)"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if list.len() > MAX_NAMESERVERS {
        return Err(invalid(format!(
            "boxlite.dns lists {} nameservers; resolv.conf uses at most {MAX_NAMESERVERS}",
            list.len()
        )));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_no_keys() {
        let (config, warnings) = parse("console=ttyS0 reboot=t quiet\n").unwrap();
        assert_eq!(config, BootConfig::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn all_keys() {
        let line = "console=ttyS0 boxlite.root=/dev/vdc boxlite.rootfstype=erofs \
                    boxlite.data=/dev/vdd boxlite.datafstype=xfs boxlite.hostname=web-1.local \
                    boxlite.dns=10.0.2.3,2001:db8::1 boxlite.port=/dev/hvc1";
        let (config, warnings) = parse(line).unwrap();
        assert_eq!(
            config,
            BootConfig {
                root: "/dev/vdc".into(),
                root_fstype: "erofs".into(),
                data: DataDisk::Device {
                    path: "/dev/vdd".into(),
                    fstype: "xfs".into()
                },
                hostname: "web-1.local".into(),
                dns: vec!["10.0.2.3".parse().unwrap(), "2001:db8::1".parse().unwrap()],
                port: Port::Device("/dev/hvc1".into()),
                net: None,
                host_addr: None,
            }
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn network_keys() {
        let line = "boxlite.net=10.0.2.15/24,10.0.2.2,1500 boxlite.hostaddr=10.0.2.2";
        let (config, warnings) = parse(line).unwrap();
        let net = config.net.unwrap();
        assert_eq!(
            net,
            NetConfig {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                mtu: 1500,
            }
        );
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(config.host_addr, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(warnings.is_empty());
        let (config, _) = parse("boxlite.net=192.168.1.9/31,192.168.1.8,68").unwrap();
        assert_eq!(
            config.net.unwrap().netmask(),
            "255.255.255.254".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(mask(1), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(mask(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn data_fstype_applies_to_the_default_disk_and_tmpfs_means_no_disk() {
        let (config, _) = parse("boxlite.datafstype=xfs").unwrap();
        assert_eq!(
            config.data,
            DataDisk::Device {
                path: "/dev/vdb".into(),
                fstype: "xfs".into()
            }
        );
        let (config, _) = parse("boxlite.data=tmpfs").unwrap();
        assert_eq!(config.data, DataDisk::Tmpfs);
        let (config, _) = parse("boxlite.port=org.boxlite.agent").unwrap();
        assert_eq!(config.port, Port::Named("org.boxlite.agent".into()));
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(
            words(r#"a "b c"=d e="f g" h"#),
            vec!["a", "b c=d", "e=f g", "h"]
        );
        assert_eq!(words("  x   y  "), vec!["x", "y"]);
        assert_eq!(words(r#"e="""#), vec!["e="]);
        let (config, _) = parse(r#"boxlite.hostname="box""#).unwrap();
        assert_eq!(config.hostname, "box");
    }

    #[test]
    fn unknown_and_valueless_keys_warn() {
        let (config, warnings) = parse("boxlite.future=1 boxlite.flag").unwrap();
        assert_eq!(config, BootConfig::default());
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("boxlite.future"), "{warnings:?}");
        assert!(warnings[1].contains("boxlite.flag"), "{warnings:?}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        for (line, key) in [
            ("boxlite.root=vda", "boxlite.root"),
            ("boxlite.root=/dev/../etc/passwd", "boxlite.root"),
            ("boxlite.data=/dev/", "boxlite.data"),
            ("boxlite.rootfstype=Ext4", "boxlite.rootfstype"),
            ("boxlite.hostname=-x", "boxlite.hostname"),
            ("boxlite.hostname=a..b", "boxlite.hostname"),
            ("boxlite.hostname=a_b", "boxlite.hostname"),
            ("boxlite.dns=1.2.3.4,nope", "boxlite.dns"),
            ("boxlite.port=a/b", "boxlite.port"),
            ("boxlite.port=/etc/../dev/x", "boxlite.port"),
            ("boxlite.dns=1.1.1.1,1.0.0.1,8.8.8.8,8.8.4.4", "boxlite.dns"),
            ("boxlite.hostaddr=::1", "boxlite.hostaddr"),
            ("boxlite.hostaddr=", "boxlite.hostaddr"),
            ("boxlite.net=10.0.2.15/24,10.0.2.2", "boxlite.net"),
            ("boxlite.net=10.0.2.15/24,10.0.2.2,1500,9", "boxlite.net"),
            ("boxlite.net=10.0.2.15,10.0.2.2,1500", "boxlite.net"),
            ("boxlite.net=10.0.2.15/0,10.0.2.2,1500", "boxlite.net"),
            ("boxlite.net=10.0.2.15/32,10.0.2.2,1500", "boxlite.net"),
            ("boxlite.net=10.0.2.15/24,10.0.3.2,1500", "boxlite.net"),
            ("boxlite.net=10.0.2.15/24,10.0.2.15,1500", "boxlite.net"),
            ("boxlite.net=10.0.2.15/24,10.0.2.2,67", "boxlite.net"),
            ("boxlite.net=10.0.2.15/24,10.0.2.2,65536", "boxlite.net"),
            ("boxlite.net=fd00::2/64,fd00::1,1500", "boxlite.net"),
        ] {
            let err = parse(line).unwrap_err().to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        let long = format!("boxlite.hostname={}", "a".repeat(MAX_HOSTNAME_LEN + 1));
        assert!(parse(&long).is_err());
        assert!(parse(&"x".repeat(MAX_CMDLINE_LEN + 1)).is_err());
    }
}
