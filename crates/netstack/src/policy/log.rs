//! Denials: a counter anyone may read, and one line per denial in the box's log file.
//!
//! A line is `TIME PROTO DESTINATION REASON`, e.g.
//! `2025-06-01T12:00:00.123Z tcp 10.1.2.3:22 default: private range 10.0.0.0/8` or
//! `2025-06-01T12:00:00.123Z dns evil.example deny evil.example`. The file is opened
//! append-only and created 0600; when it would pass [`MAX_LOG_BYTES`] it is renamed to
//! `PATH.1` (replacing an older one) and a new file started, so the newest denials are always
//! kept and the disk holds at most twice the cap. A failing log never fails a flow: the line
//! is dropped, the counter still counts.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most bytes one log file holds before it is rotated to `.1`.
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;
/// The longest line written: guest-chosen names are already capped; this bounds the rest.
const MAX_LINE: usize = 1024;

/// A handle on a policy's denial count, readable from any thread.
#[derive(Debug, Clone, Default)]
pub struct DenialCounter(Arc<AtomicU64>);

impl DenialCounter {
    /// Denials so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The denial log: the counter and, if configured, the file.
#[derive(Debug)]
pub struct DenialLog {
    counter: DenialCounter,
    file: Option<LogFile>,
}

#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
}

impl DenialLog {
    /// A log writing to `path` (if any); the file is opened now so a bad path fails early.
    pub fn open(path: Option<&Path>) -> io::Result<DenialLog> {
        let file = match path {
            Some(path) => {
                let file = open(path)?;
                let written = file.metadata()?.len();
                Some(LogFile {
                    path: path.to_owned(),
                    file: Some(file),
                    written,
                })
            }
            None => None,
        };
        Ok(DenialLog {
            counter: DenialCounter::default(),
            file,
        })
    }

    /// The counter handle.
    pub fn counter(&self) -> DenialCounter {
        self.counter.clone()
    }

    /// Counts a denial and logs it: `proto` and `dst` say what, `reason` why.
    pub fn deny(&mut self, proto: &str, dst: &str, reason: &str) {
        self.counter.bump();
        let Some(log) = &mut self.file else { return };
        let mut line = format!("{} {proto} {dst} {reason}", rfc3339(SystemTime::now()));
        line.retain(|c| !c.is_control());
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        line.push('\n');
        log.write(line.as_bytes());
    }
}

impl LogFile {
    fn write(&mut self, line: &[u8]) {
        if self.written + line.len() as u64 > MAX_LOG_BYTES {
            self.rotate();
        }
        let Some(file) = &mut self.file else { return };
        // One write(2) of a short line to an O_APPEND file: no partial lines interleave.
        match file.write_all(line) {
            Ok(()) => self.written += line.len() as u64,
            // Stop writing (a full disk would fail every line); keep counting.
            Err(_) => self.file = None,
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        if std::fs::rename(&self.path, &old).is_ok() {
            self.file = open(&self.path).ok();
            self.written = 0;
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// `time` as RFC 3339 UTC with milliseconds: `2025-06-01T12:00:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_748_779_199);
        assert_eq!(rfc3339(t), "2025-06-01T11:59:59.000Z");
    }

    #[test]
    fn logs_one_line_per_denial_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.log");
        let mut log = DenialLog::open(Some(&path)).unwrap();
        let counter = log.counter();
        log.deny("tcp", "10.1.2.3:22", "default: private range 10.0.0.0/8");
        log.deny("dns", "evil\nexample", "deny evil.example");
        assert_eq!(counter.get(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert_eq!(time.len(), "2025-06-01T12:00:00.123Z".len());
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T');
        assert_eq!(rest, "tcp 10.1.2.3:22 default: private range 10.0.0.0/8");
        assert!(lines[1].ends_with("dns evilexample deny evil.example"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotates_once_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.log");
        let mut log = DenialLog::open(Some(&path)).unwrap();
        let reason = "x".repeat(500);
        let lines = 3 * MAX_LOG_BYTES as usize / 500;
        for _ in 0..lines {
            log.deny("tcp", "198.51.100.1:1", &reason);
        }
        assert_eq!(log.counter().get(), lines as u64);
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(len(&path) <= MAX_LOG_BYTES);
        assert!(len(&dir.path().join("net.log.1")) <= MAX_LOG_BYTES);
        assert!(len(&dir.path().join("net.log.1")) > MAX_LOG_BYTES - 1024);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn counts_without_a_file() {
        let mut log = DenialLog::open(None).unwrap();
        log.deny("udp", "10.0.0.1:53", "x");
        assert_eq!(log.counter().get(), 1);
    }
}
