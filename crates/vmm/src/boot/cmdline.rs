//! The kernel command line: the user's words plus one `virtio_mmio.device=` per device.

use crate::error::{Error, Result};
use crate::layout::CMDLINE_MAX_LEN;

/// A virtio-mmio device as the kernel's `virtio_mmio.device=<size>@<base>:<irq>` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDevice {
    /// Window base.
    pub base: u64,
    /// Window size.
    pub size: u64,
    /// Interrupt line.
    pub irq: u32,
}

/// Joins `user` and the device list into the command line, NUL excluded; refuses one the
/// kernel would truncate or one with a NUL inside.
pub fn assemble(user: &str, devices: &[MmioDevice]) -> Result<String> {
    if user.contains('\0') {
        return Err(Error::Cmdline("contains a NUL byte".into()));
    }
    let mut line = user.trim().to_owned();
    for d in devices {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&format!(
            "virtio_mmio.device={}K@{:#x}:{}",
            d.size >> 10,
            d.base,
            d.irq
        ));
    }
    if line.len() + 1 > CMDLINE_MAX_LEN {
        return Err(Error::Cmdline(format!(
            "{} bytes, more than the kernel's {} (with its NUL)",
            line.len(),
            CMDLINE_MAX_LEN
        )));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_appended() {
        let devices = [
            MmioDevice {
                base: 0xd000_0000,
                size: 0x1000,
                irq: 5,
            },
            MmioDevice {
                base: 0xd000_1000,
                size: 0x1000,
                irq: 6,
            },
        ];
        assert_eq!(
            assemble(" console=ttyS0 ", &devices).unwrap(),
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
        );
        assert_eq!(
            assemble("", &devices[..1]).unwrap(),
            "virtio_mmio.device=4K@0xd0000000:5"
        );
    }

    #[test]
    fn too_long_or_nul_is_refused() {
        assert!(assemble(&"x".repeat(CMDLINE_MAX_LEN), &[]).is_err());
        assert!(assemble(&"x".repeat(CMDLINE_MAX_LEN - 1), &[]).is_ok());
        assert!(assemble("a\0b", &[]).is_err());
    }
}
