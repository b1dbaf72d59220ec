//! `boxlite-vmm`: runs one VM from a configuration and exits with the guest's outcome.

fn main() {}
