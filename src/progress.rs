//! Progress bars for long command-line work (`sluice test` over many tests, `sluice
//! docs`), drawn on standard error only when it is a terminal: piped or captured output
//! (CI logs, scripts) gets no control sequences at all.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing when standard error is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `len` steps labelled `what`, visible when standard error is a terminal.
    pub fn new(len: u64, what: &str) -> Self {
        Self::with_terminal(len, what, std::io::stderr().is_terminal())
    }

    /// Like [`Progress::new`], with the terminal check given (for tests).
    pub fn with_terminal(len: u64, what: &str, terminal: bool) -> Self {
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
    pub fn step(&self, current: &str) {
        self.bar.inc(1);
        self.bar.set_message(current.to_owned());
    }

    /// Moves the bar to `pos`, for work counted elsewhere (events a driver sent).
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    pub fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }

    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Removes the bar, so the command's own report follows on a clean line.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
