//! The host a benchmark ran on, in words, for its report.

use boxlite::internals;

/// CPU model, cores, memory and kernel, in words.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let memory = internals::memory_total_mib()
        .map_or_else(|_| "? GiB".into(), |m| format!("{} GiB", m / 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {memory}, Linux {}", kernel.trim())
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A one-line status of benchmark `bench` on a terminal (nothing otherwise); empty clears it.
pub fn progress(bench: &str, what: &str) {
    use std::io::{IsTerminal, Write};
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[K{bench}: {what}");
        if what.is_empty() {
            let _ = write!(err, "\r\x1b[K");
        }
        let _ = err.flush();
    }
}
