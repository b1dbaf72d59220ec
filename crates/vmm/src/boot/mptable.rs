//! The Intel MultiProcessor table (MP spec 1.4), which is how a Linux without ACPI finds its
//! CPUs and the IOAPIC. It lives in the EBDA, where Linux scans for the `_MP_` signature.

use crate::layout::{APIC_ADDR, EBDA_ADDR, IOAPIC_ADDR, IOAPIC_PINS};

/// Most vCPUs: the table (268 bytes + 20 per CPU) must fit the 1 KiB we reserve in the EBDA.
pub const MAX_CPUS: u8 = 32;
/// Where the floating pointer structure goes; the configuration table follows it.
pub const ADDR: u64 = EBDA_ADDR;

const SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_BUS: u8 = 0;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// The table for `cpus` vCPUs (APIC IDs 0..cpus, vCPU 0 the bootstrap processor): the bytes to
/// write at [`ADDR`].
pub fn build(cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries: Vec<u8> = Vec::new();
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[0, id, APIC_VERSION, flags]);
        // Signature family 6 model 15 and FPU|APIC feature flags, as a BIOS would report.
        entries.extend_from_slice(&0x0000_0600u32.to_le_bytes());
        entries.extend_from_slice(&0x0000_0201u32.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[1, ISA_BUS, b'I', b'S', b'A', b' ', b' ', b' ']);
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    for pin in 0..IOAPIC_PINS as u8 {
        entries.extend_from_slice(&[3, INT_TYPE_INT, 0, 0, ISA_BUS, pin, ioapic_id, pin]);
    }
    entries.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, ISA_BUS, 0, 0, 0]);
    entries.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, ISA_BUS, 0, 0xff, 1]);
    let count = u16::from(cpus) + 2 + IOAPIC_PINS as u16 + 2;

    let config_addr = ADDR + 16;
    let mut config = Vec::with_capacity(44 + entries.len());
    config.extend_from_slice(b"PCMP");
    config.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    config.push(SPEC_REV);
    config.push(0); // checksum, below
    config.extend_from_slice(b"BOXLITE ");
    config.extend_from_slice(b"KVM VMM     ");
    config.extend_from_slice(&[0; 4]); // OEM table
    config.extend_from_slice(&[0; 2]);
    config.extend_from_slice(&count.to_le_bytes());
    config.extend_from_slice(&(APIC_ADDR as u32).to_le_bytes());
    config.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut table = Vec::with_capacity(16 + config.len());
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&(config_addr as u32).to_le_bytes());
    table.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    table[10] = checksum(&table);
    table.extend_from_slice(&config);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_counts() {
        for cpus in [1u8, 2, MAX_CPUS] {
            let t = build(cpus);
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let config = &t[16..];
            assert_eq!(&config[0..4], b"PCMP");
            let len = u16::from_le_bytes([config[4], config[5]]) as usize;
            assert_eq!(len, config.len());
            assert_eq!(config.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
            let count = u16::from_le_bytes([config[34], config[35]]);
            assert_eq!(count, u16::from(cpus) + 28);
            assert!(t.len() <= 0x400, "fits the reserved EBDA kilobyte");
            // The first processor entry is the enabled BSP.
            assert_eq!(&config[44..48], &[0, 0, APIC_VERSION, 3]);
        }
    }
}
