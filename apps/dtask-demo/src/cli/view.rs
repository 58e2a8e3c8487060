//! Live progress on the terminal: a progress bar on a TTY, plain lines
//! otherwise.

use std::io::IsTerminal;

use dtask::TaskProgress;
use indicatif::{ProgressBar, ProgressStyle};

pub(crate) struct ProgressView {
    bar: Option<ProgressBar>,
    last_line: String,
}

impl ProgressView {
    pub(crate) fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            last_line: String::new(),
        }
    }

    pub(crate) fn show(&mut self, progress: &TaskProgress) {
        let step = progress.current_step.as_deref().unwrap_or(progress.status.as_str());
        let message = progress.message.as_deref().unwrap_or("");
        match &self.bar {
            Some(bar) => {
                bar.set_position(progress.percent.round() as u64);
                // Step messages usually name their step already.
                if message.starts_with(step) {
                    bar.set_message(message.to_owned());
                } else {
                    bar.set_message(format!("{step}: {message}"));
                }
            }
            None => {
                let line = format!(
                    "[{:>3.0}%] {} — {}",
                    progress.percent,
                    progress.status.as_str(),
                    message
                );
                if line != self.last_line {
                    eprintln!("{line}");
                    self.last_line = line;
                }
            }
        }
    }

    /// Prints a line above the bar (or as a plain line).
    pub(crate) fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
