//! Progress bars for long command-line work (`sluice test` over many tests, `sluice
//! docs`, the backfills of `sluice run`), drawn on standard error only when it is a
//! terminal: piped or captured output (CI logs, scripts) gets no control sequences at all.
//!
//! While `sluice run` shows bars, log lines go through [`LogWriter`], which lifts the
//! bars off the screen for the length of one write, so a line never lands inside a bar.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::telemetry::Telemetry;

/// A progress bar, or nothing when standard error is not a terminal.
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `len` steps labelled `what`, visible when standard error is a terminal.
    pub(crate) fn new(len: u64, what: &str) -> Self {
        Self::with_terminal(len, what, std::io::stderr().is_terminal())
    }

    /// Like [`Progress::new`], with the terminal check given (for tests).
    pub(crate) fn with_terminal(len: u64, what: &str, terminal: bool) -> Self {
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Self { bar }
    }

    /// One more step done, `current` naming the next one.
    pub(crate) fn step(&self, current: &str) {
        self.bar.inc(1);
        self.bar.set_message(current.to_owned());
    }

    /// Moves the bar to `pos`, for work counted elsewhere (events a driver sent).
    pub(crate) fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    pub(crate) fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    pub(crate) fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    #[cfg(test)]
    pub(crate) fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Removes the bar, so the command's own report follows on a clean line.
    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// Where `sluice run` draws its bars: `Some` only when standard error is a terminal.
pub(crate) fn terminal_bars() -> Option<MultiProgress> {
    std::io::stderr()
        .is_terminal()
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// A `tracing` writer to standard error that suspends the bars of `MultiProgress` while
/// it writes (the fmt layer writes one whole event per `write_all`).
#[derive(Clone)]
pub(crate) struct LogWriter(pub MultiProgress);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// One bar per backfill that is under way, kept in line with what the sources publish
/// ([`crate::telemetry::backfill`]). A backfill shows once its rows are counted and
/// disappears when done.
pub(crate) struct BackfillBars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl BackfillBars {
    pub(crate) fn new(multi: MultiProgress) -> Self {
        Self {
            multi,
            bars: HashMap::new(),
        }
    }

    /// Brings the bars in line with `(component id, done, total)` of every backfill.
    pub(crate) fn update(&mut self, backfills: impl IntoIterator<Item = (String, u64, u64)>) {
        let mut seen = Vec::new();
        for (id, done, total) in backfills {
            if total == 0 || done >= total {
                continue;
            }
            let bar = self.bars.entry(id.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(total));
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix} backfill [{bar:30}] {pos}/{len} rows {percent:>3}% eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(id.clone());
                bar
            });
            bar.set_length(total);
            bar.set_position(done);
            seen.push(id);
        }
        self.bars.retain(|id, bar| {
            let keep = seen.contains(id);
            if !keep {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            keep
        });
    }

    /// Reads every component's backfill from `telemetry` and updates the bars.
    pub(crate) fn update_from(&mut self, telemetry: &Telemetry) {
        self.update(telemetry.components().iter().filter_map(|c| {
            let (done, total) = crate::telemetry::backfill::read(c)?;
            Some((c.id.clone(), done, total))
        }));
    }

    /// `(component id, position, length)` of the bars shown, sorted by id.
    #[cfg(test)]
    pub(crate) fn shown(&self) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = self
            .bars
            .iter()
            .map(|(id, b)| (id.clone(), b.position(), b.length().unwrap_or(0)))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_bars_follow_progress_and_go_away_when_done() {
        let mut bars =
            BackfillBars::new(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        // Not counted yet (total 0): no bar.
        bars.update([("a".to_owned(), 0, 0)]);
        assert!(bars.shown().is_empty());
        bars.update([("a".to_owned(), 10, 100), ("b".to_owned(), 0, 5)]);
        assert_eq!(
            bars.shown(),
            [("a".to_owned(), 10, 100), ("b".to_owned(), 0, 5)]
        );
        bars.update([("a".to_owned(), 60, 100), ("b".to_owned(), 5, 5)]);
        assert_eq!(bars.shown(), [("a".to_owned(), 60, 100)], "b is done");
        // A component removed by a reload takes its bar with it.
        bars.update(Vec::new());
        assert!(bars.shown().is_empty());
    }

    #[test]
    fn backfill_bars_read_the_published_gauges() {
        let t = Telemetry::new();
        let c = t.component(
            "history",
            crate::telemetry::ComponentKind::Source,
            "postgres",
        );
        let p = crate::telemetry::backfill::BackfillProgress::attach(&c);
        p.set_total(40);
        p.set_done(30);
        let mut bars =
            BackfillBars::new(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));
        bars.update_from(&t);
        assert_eq!(bars.shown(), [("history".to_owned(), 30, 40)]);
    }

    #[test]
    fn hidden_without_a_terminal_and_still_counts() {
        let p = Progress::with_terminal(3, "tests", false);
        assert!(p.is_hidden());
        p.step("a");
        p.step("b");
        assert_eq!(p.position(), 2);
        p.finish();
    }
}
