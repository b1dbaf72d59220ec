//! vCPUs: what each one is told about itself (CPUID), its initial state, and its run loop.

pub mod cpuid;
pub mod regs;
pub mod vcpu;
