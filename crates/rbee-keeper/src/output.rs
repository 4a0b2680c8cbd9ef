//! What the user sees: tokens on stdout as they arrive; narration and progress bars on
//! stderr.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbee_api::Narration;
use rbee_api::hive::DownloadEvent;
use rbee_api::worker::LoadingEvent;

/// `[queen-rbee] Starting rbee-hive on localhost`.
pub fn narrate(n: &Narration) {
    let _ = writeln!(std::io::stderr(), "{n}");
}

/// Prints `value` as one line of JSON (a list command's `--json`).
pub fn json<T: serde::Serialize>(value: &T) -> crate::error::Result<()> {
    let line = serde_json::to_string(value)
        .map_err(|e| crate::error::fail(format!("cannot write the answer as JSON: {e}")))?;
    println!("{line}");
    Ok(())
}

/// `93.0 MB`, `1.2 GB`: sizes in decimal units, as download tools show them.
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// `45 s`, `4 min 5 s`, `2 h 3 min`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

pub fn token(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The download and loading bars of one command. When stderr is not a terminal (a log
/// file, CI), bars cannot redraw, so progress is printed as plain lines at each quarter.
pub struct Bars {
    download: Option<ProgressBar>,
    loading: Option<ProgressBar>,
    plain: bool,
    /// The last quarter printed in plain mode, per bar (download, loading).
    printed: [Option<u64>; 2],
}

impl Default for Bars {
    fn default() -> Self {
        Self {
            download: None,
            loading: None,
            plain: !std::io::stderr().is_terminal(),
            printed: [None, None],
        }
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

impl Bars {
    /// In plain mode, prints `line` when `done/total` reaches a quarter not printed yet.
    fn plain_line(&mut self, which: usize, done: u64, total: u64, line: impl FnOnce() -> String) {
        let quarter = (done * 4).checked_div(total).unwrap_or(0).min(4);
        if self.printed[which].is_none_or(|q| quarter > q) {
            self.printed[which] = Some(quarter);
            eprintln!("{}", line());
        }
    }

    pub fn download(&mut self, event: &DownloadEvent) {
        if self.plain
            && let DownloadEvent::Downloading {
                bytes_downloaded,
                bytes_total,
                speed_mbps,
            } = event
        {
            let mb = |b: u64| b as f64 / 1e6;
            self.plain_line(0, *bytes_downloaded, *bytes_total, || {
                format!(
                    "Downloading {:>3}% ({:.1}/{:.1} MB, {speed_mbps:.1} MB/s)",
                    (bytes_downloaded * 100)
                        .checked_div(*bytes_total)
                        .unwrap_or(0),
                    mb(*bytes_downloaded),
                    mb(*bytes_total)
                )
            });
            return;
        }
        match event {
            DownloadEvent::Downloading {
                bytes_downloaded,
                bytes_total,
                speed_mbps,
            } => {
                let bar = self.download.get_or_insert_with(|| {
                    bar(
                        *bytes_total,
                        "Downloading [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {msg}",
                    )
                });
                bar.set_length(*bytes_total);
                bar.set_position(*bytes_downloaded);
                bar.set_message(format!("{speed_mbps:.1} MB/s"));
            }
            DownloadEvent::Retrying {
                attempt,
                max_attempts,
                delay_ms,
                error,
            } => {
                let line = format!(
                    "Download attempt {attempt}/{max_attempts} failed ({error}); retrying in {delay_ms} ms"
                );
                match &self.download {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
            DownloadEvent::Complete { .. } | DownloadEvent::Failed { .. } => {
                if let Some(bar) = self.download.take() {
                    bar.finish_and_clear();
                }
            }
            DownloadEvent::Verifying => {
                if let Some(bar) = &self.download {
                    bar.set_message("verifying sha256");
                }
            }
        }
    }

    pub fn loading(&mut self, event: &LoadingEvent) {
        if self.plain {
            if let LoadingEvent::LoadingToVram {
                layers_loaded,
                layers_total,
                ..
            } = event
            {
                let (done, total) = (*layers_loaded as u64, *layers_total as u64);
                self.plain_line(1, done, total, || format!("Loading {done}/{total} layers"));
            }
            return;
        }
        match event {
            LoadingEvent::LoadingToVram {
                layers_loaded,
                layers_total,
                ..
            } => {
                let total = *layers_total as u64;
                let bar = self
                    .loading
                    .get_or_insert_with(|| bar(total, "Loading     [{bar:30}] {pos}/{len} layers"));
                bar.set_position(*layers_loaded as u64);
            }
            LoadingEvent::Ready | LoadingEvent::Failed { .. } => {
                if let Some(bar) = self.loading.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    pub fn clear(&mut self) {
        for bar in [self.download.take(), self.loading.take()]
            .into_iter()
            .flatten()
        {
            bar.finish_and_clear();
        }
    }
}
