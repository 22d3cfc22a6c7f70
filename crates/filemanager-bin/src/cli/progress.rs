//! Progress bars for long transfers: shown only when stderr is a terminal and the transfer is
//! over 1 MiB, so scripts and pipes see clean output.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Transfers smaller than this show no bar.
const MIN_BYTES: u64 = 1 << 20;

/// A bar for a transfer of `total` bytes (if known), or a hidden one.
pub fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let visible = std::io::stderr().is_terminal() && total.is_none_or(|t| t >= MIN_BYTES);
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_owned());
    bar
}
