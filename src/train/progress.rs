//! Progress of the long steps (extracting features, training, evaluating): a bar on a terminal,
//! log lines elsewhere, so a run under systemd or in CI still says how far it got.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on a terminal; plain log lines (every 10%) elsewhere. Threads may share one.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: AtomicU64,
}

impl Progress {
    pub(super) fn new(label: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        Progress {
            bar,
            label: label.into(),
            total,
            done: 0.into(),
        }
    }

    pub(super) fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.total >= 10 && done.is_multiple_of(self.total / 10) => {
                log::info!("{}: {done}/{}", self.label, self.total);
            }
            None => {}
        }
    }

    pub(super) fn message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    pub(super) fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        log::info!(
            "{}: done ({} of {})",
            self.label,
            self.done.load(Ordering::Relaxed),
            self.total
        );
    }
}
