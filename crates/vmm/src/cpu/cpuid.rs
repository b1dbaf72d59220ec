//! CPUID: KVM's supported set, with each vCPU's topology and the hypervisor leaves made
//! consistent for a VM of N single-threaded cores in one package.

use kvm_bindings::kvm_cpuid_entry2;

/// CPUID.1:ECX bit 31: running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28: the package has more than one logical processor.
const EDX_HTT: u32 = 1 << 28;
/// Base of the hypervisor leaves.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];
/// Leaf 0xB/0x1F level types.
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Bits needed to number `n` items (APIC ID field width).
fn bits_for(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Adjusts KVM's supported CPUID for vCPU `cpu` of `cpus`, in place; adds the KVM signature
/// leaf if KVM did not report it.
pub fn filter(entries: &mut Vec<kvm_cpuid_entry2>, cpu: u8, cpus: u8) {
    let (cpu, cpus) = (u32::from(cpu), u32::from(cpus.max(1)));
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                // APIC ID, and the count of addressable logical processor IDs in the package.
                e.ebx = (e.ebx & 0x0000_ffff) | (cpu << 24) | ((1 << bits_for(cpus)) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if cpus > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            4 => {
                // Cores per package - 1; caches above L2 are shared by every core.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { cpus - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | (sharing.min(0xfff) << 14) | ((cpus - 1).min(63) << 26);
            }
            6 => {
                // No thermal/power management MSRs are emulated.
                e.ecx &= !(1 << 3);
            }
            0xa => {
                // No virtual PMU: a guest would otherwise program counters we do not save.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => {
                e.edx = cpu;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (LEVEL_SMT << 8) | e.index;
                    }
                    1 => {
                        e.eax = bits_for(cpus);
                        e.ebx = cpus;
                        e.ecx = (LEVEL_CORE << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x8000_0008 => {
                // AMD: number of cores - 1, and the APIC ID width.
                e.ecx = (e.ecx & !0xf0ff) | (cpus - 1) | (bits_for(cpus) << 12);
            }
            _ => {}
        }
    }
    if !entries.iter().any(|e| e.function == HYPERVISOR_LEAF) {
        entries.push(kvm_cpuid_entry2 {
            function: HYPERVISOR_LEAF,
            eax: HYPERVISOR_LEAF + 1,
            ebx: KVM_SIGNATURE[0],
            ecx: KVM_SIGNATURE[1],
            edx: KVM_SIGNATURE[2],
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0,
            edx: 0,
            ..Default::default()
        }
    }

    #[test]
    fn topology_and_hypervisor_bits() {
        let mut e = vec![
            leaf(1, 0),
            leaf(0xb, 0),
            leaf(0xb, 1),
            leaf(0xb, 2),
            leaf(0xa, 0),
            leaf(4, 0),
        ];
        e[5].eax = 3 << 5; // an L3 cache
        filter(&mut e, 3, 4);
        assert_eq!(e[0].ebx >> 24, 3, "APIC ID");
        assert_eq!((e[0].ebx >> 16) & 0xff, 4, "logical processors");
        assert_eq!(e[0].ebx & 0xffff, 0xffff, "other fields kept");
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        assert_eq!((e[1].ebx, e[1].ecx, e[1].edx), (1, 0x100, 3));
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx, e[2].edx), (2, 4, 0x201, 3));
        assert_eq!((e[3].eax, e[3].ebx, e[3].ecx), (0, 0, 2));
        assert_eq!(e[4].eax, 0, "no PMU");
        assert_eq!(e[5].eax >> 26, 3, "cores per package - 1");
        assert_eq!((e[5].eax >> 14) & 0xfff, 3, "L3 shared by all");
        let hv = e.iter().find(|l| l.function == HYPERVISOR_LEAF).unwrap();
        let sig: Vec<u8> = [hv.ebx, hv.ecx, hv.edx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        assert_eq!(&sig, b"KVMKVMKVM\0\0\0");
    }

    #[test]
    fn one_cpu_has_no_htt() {
        let mut e = vec![leaf(1, 0)];
        e[0].edx = EDX_HTT;
        filter(&mut e, 0, 1);
        assert_eq!(e[0].edx & EDX_HTT, 0);
        assert_eq!((e[0].ebx >> 16) & 0xff, 1);
    }

    #[test]
    fn apic_id_width() {
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(3), 2);
        assert_eq!(bits_for(32), 5);
    }
}
