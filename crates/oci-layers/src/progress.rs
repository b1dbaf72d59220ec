//! Progress bars for long steps, shown only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress indicator for one long step; does nothing when stderr is not a terminal.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A byte-counting bar labelled `label`, with `total` bytes when known.
    pub fn bytes(label: &str, total: Option<u64>) -> Progress {
        Self::with_style(
            label,
            total,
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            "{prefix:>12} {spinner} {bytes} {bytes_per_sec}",
        )
    }

    /// An item-counting bar labelled `label`, with `total` items when known.
    pub fn items(label: &str, total: Option<u64>) -> Progress {
        Self::with_style(
            label,
            total,
            "{prefix:>12} [{bar:30}] {pos}/{len}",
            "{prefix:>12} {spinner} {pos}",
        )
    }

    /// A progress that never draws (for library callers and tests).
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    fn with_style(label: &str, total: Option<u64>, known: &str, unknown: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() { known } else { unknown };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_prefix(label.to_string());
        Progress { bar: Some(bar) }
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
