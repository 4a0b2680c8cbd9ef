//! What the user sees: tokens on stdout as they arrive; narration and progress bars on
//! stderr.

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbee_api::Narration;
use rbee_api::hive::DownloadEvent;
use rbee_api::worker::LoadingEvent;

/// `[queen-rbee] Starting rbee-hive on localhost`.
pub fn narrate(n: &Narration) {
    let _ = writeln!(std::io::stderr(), "{n}");
}

pub fn token(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The download and loading bars of one command.
#[derive(Default)]
pub struct Bars {
    download: Option<ProgressBar>,
    loading: Option<ProgressBar>,
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

impl Bars {
    pub fn download(&mut self, event: &DownloadEvent) {
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
