//! Getting a model into the catalog: `file:` references are registered in place, `hf:`
//! references are downloaded from the Hub.
//!
//! A download writes `<file>.partial`, resumes it with `Range` after a broken connection
//! (up to [`MAX_ATTEMPTS`] attempts, backoff doubling from the configured delay), verifies
//! the sha256 the Hub reports, and only then renames the file and registers it. Concurrent
//! requests for the same model share one download; its events are kept so a progress
//! stream that connects late replays them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbee_api::hive::{
    DownloadEvent, DownloadStarted, DownloadState, ModelEntry, ModelSettings, Provider,
};
use rbee_api::now_unix;
use rbee_http::sse::EventLog;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::catalog::ModelCatalog;
use crate::error::HiveError;
use crate::hub::{HubClient, HubError, RemoteFile};
use crate::logs::LogHub;
use crate::metrics::HiveMetrics;
use crate::model_ref::{ModelRef, choose_file, files_of_model, quant_of_file};
use crate::preflight::Preflight;

pub const MAX_ATTEMPTS: u32 = 6;
/// Progress events are sent at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Bytes read first to check a model's GGUF header; four times as many while the header is
/// longer (a 262k-token vocabulary takes ~6.5 MB).
const HEADER_PROBE_BYTES: u64 = 4 << 20;

type Outcome = Option<Result<ModelEntry, HiveError>>;

struct Job {
    events: EventLog<DownloadEvent>,
    outcome: watch::Sender<Outcome>,
}

impl Job {
    fn emit(&self, event: DownloadEvent) {
        self.events.push(event);
    }

    fn finished(&self) -> bool {
        self.outcome.borrow().is_some()
    }
}

pub struct Downloads {
    hub: HubClient,
    /// Checks a model's header before its body is downloaded, and a file before it is
    /// registered.
    preflight: Preflight,
    catalog: Arc<dyn ModelCatalog>,
    models_dir: PathBuf,
    backoff: Duration,
    logs: Arc<LogHub>,
    metrics: Arc<HiveMetrics>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// The settings of models whose file went missing or changed, until they are catalogued
    /// again (`rbee models set` is not undone by a download).
    kept_settings: Mutex<HashMap<String, ModelSettings>>,
}

impl Downloads {
    pub fn new(
        hub: HubClient,
        catalog: Arc<dyn ModelCatalog>,
        models_dir: PathBuf,
        backoff: Duration,
        logs: Arc<LogHub>,
        metrics: Arc<HiveMetrics>,
        preflight: Preflight,
    ) -> Self {
        Self {
            hub,
            preflight,
            catalog,
            models_dir,
            backoff,
            logs,
            metrics,
            jobs: Mutex::new(HashMap::new()),
            kept_settings: Mutex::new(HashMap::new()),
        }
    }

    /// Free bytes on the disk that holds the models directory (or the nearest existing
    /// ancestor, before the first download creates it).
    pub fn disk_free_bytes(&self) -> Option<u64> {
        let dir = self.models_dir.ancestors().find(|d| d.exists())?;
        let stats = nix::sys::statvfs::statvfs(dir).ok()?;
        // Both are u64 on 64-bit Linux, narrower types elsewhere.
        #[allow(clippy::useless_conversion)]
        let (blocks, size) = (
            u64::from(stats.blocks_available()),
            u64::from(stats.fragment_size()),
        );
        Some(blocks.saturating_mul(size))
    }

    /// The catalog entry for `model_ref` if it is there and its file still is too.
    fn catalogued(&self, model_ref: &ModelRef) -> Result<Option<ModelEntry>, HiveError> {
        let Some(entry) = self.catalog.find(model_ref)? else {
            return Ok(None);
        };
        // A file merely named like a shard is a whole model: its own size counts then.
        let path = Path::new(&entry.local_path);
        let on_disk = rbee_api::split::model_size_on_disk(path)
            .or_else(|| std::fs::metadata(path).map(|m| m.len()).ok());
        if on_disk == Some(entry.size_bytes) {
            return Ok(Some(entry));
        }
        self.logs.hive(format!(
            "catalog entry {} points to a missing or changed file {}; fetching it again",
            entry.reference, entry.local_path
        ));
        if !entry.settings.is_default() {
            self.kept_settings()
                .insert(entry.reference.canonical(), entry.settings.clone());
        }
        self.catalog.remove(&entry.reference)?;
        Ok(None)
    }

    fn kept_settings(&self) -> std::sync::MutexGuard<'_, HashMap<String, ModelSettings>> {
        (self.kept_settings.lock()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Catalogs `entry` with the settings its model had before its file was fetched again.
    fn catalog_entry(&self, mut entry: ModelEntry) -> Result<ModelEntry, HiveError> {
        if let Some(settings) = self.kept_settings().remove(&entry.reference.canonical()) {
            entry.settings = settings;
        }
        self.catalog.upsert(&entry)?;
        Ok(entry)
    }

    /// Starts getting `model_ref` if needed and returns at once.
    pub async fn start(
        self: &Arc<Self>,
        model_ref: &ModelRef,
    ) -> Result<DownloadStarted, HiveError> {
        let id = model_ref.canonical();
        if let Some(entry) = self.catalogued(model_ref)? {
            return Ok(DownloadStarted {
                download_id: id,
                state: DownloadState::Present,
                local_path: Some(entry.local_path),
            });
        }
        if let ModelRef::File(_) = model_ref {
            let entry = self.register_file(model_ref).await?;
            return Ok(DownloadStarted {
                download_id: id,
                state: DownloadState::Present,
                local_path: Some(entry.local_path),
            });
        }
        self.job(model_ref);
        Ok(DownloadStarted {
            download_id: id,
            state: DownloadState::Downloading,
            local_path: None,
        })
    }

    /// Waits until `model_ref` is in the catalog, downloading it if needed.
    pub async fn ensure(self: &Arc<Self>, model_ref: &ModelRef) -> Result<ModelEntry, HiveError> {
        if let Some(entry) = self.catalogued(model_ref)? {
            return Ok(entry);
        }
        if let ModelRef::File(_) = model_ref {
            return self.register_file(model_ref).await;
        }
        let job = self.job(model_ref);
        let mut outcome = job.outcome.subscribe();
        let done = outcome.wait_for(Option::is_some).await.map_err(|_| {
            HiveError::Internal("the download task ended without an outcome".into())
        })?;
        done.clone()
            .unwrap_or_else(|| Err(HiveError::Internal("download outcome missing".into())))
    }

    /// The events of the download `id` so far, and its future ones.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<Vec<DownloadEvent>>> {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        jobs.get(id).map(|job| job.events.subscribe())
    }

    /// The running job for `model_ref`, or a new one (the only place downloads start).
    fn job(self: &Arc<Self>, model_ref: &ModelRef) -> Arc<Job> {
        let id = model_ref.canonical();
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(job) = jobs.get(&id).filter(|j| !j.finished()) {
            return job.clone();
        }
        let job = Arc::new(Job {
            events: EventLog::default(),
            outcome: watch::channel(None).0,
        });
        jobs.insert(id.clone(), job.clone());
        let (this, task_job, model_ref) = (self.clone(), job.clone(), model_ref.clone());
        tokio::spawn(async move {
            this.logs.hive(format!("downloading {id}"));
            let outcome = this.download(&model_ref, &task_job).await;
            let outcome = outcome.and_then(|entry| this.catalog_entry(entry));
            let result = if outcome.is_ok() {
                "completed"
            } else {
                "failed"
            };
            this.metrics.downloads.inc(result);
            match &outcome {
                Ok(entry) => {
                    this.logs
                        .hive(format!("downloaded {id} to {}", entry.local_path));
                    task_job.emit(DownloadEvent::Complete {
                        local_path: entry.local_path.clone(),
                    });
                }
                Err(e) => {
                    this.logs.hive(format!("download of {id} failed: {e}"));
                    task_job.emit(DownloadEvent::Failed {
                        error: e.envelope(),
                    });
                }
            }
            task_job.outcome.send_replace(Some(outcome));
        });
        job
    }

    /// Catalogs a local file, once the worker binary has read its header as it will when it
    /// loads it: a file that fails the check is never registered.
    async fn register_file(&self, model_ref: &ModelRef) -> Result<ModelEntry, HiveError> {
        let ModelRef::File(path) = model_ref else {
            return Err(HiveError::Internal("not a file reference".into()));
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            HiveError::ModelNotFound(format!("model file {} cannot be read: {e}", path.display()))
        })?;
        if !meta.is_file() {
            return Err(HiveError::ModelNotFound(format!(
                "{} is not a file",
                path.display()
            )));
        }
        self.preflight.check_file(path, false).await?;
        let size_bytes = rbee_api::split::model_size_on_disk(path).unwrap_or(meta.len());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let entry = ModelEntry {
            id: uuid::Uuid::new_v4().to_string(),
            provider: Provider::File,
            reference: model_ref.clone(),
            local_path: path.display().to_string(),
            size_bytes,
            sha256: None,
            quantization: quant_of_file(&name),
            downloaded_at_unix: now_unix(),
            settings: Default::default(),
        };
        let entry = self.catalog_entry(entry)?;
        self.logs.hive(format!(
            "registered {} ({} bytes)",
            entry.reference, entry.size_bytes
        ));
        Ok(entry)
    }

    async fn download(&self, model_ref: &ModelRef, job: &Job) -> Result<ModelEntry, HiveError> {
        let ModelRef::Hf {
            repo,
            revision,
            selector,
        } = model_ref
        else {
            return Err(HiveError::Internal("not a Hugging Face reference".into()));
        };
        let rev = revision.as_deref().unwrap_or(crate::hub::DEFAULT_REVISION);
        let failed = |attempts: u32, cause: String| HiveError::DownloadFailed {
            model_ref: model_ref.clone(),
            attempts,
            cause,
        };
        let fatal = |e: HubError| match e {
            HubError::NotFound(m) => HiveError::ModelNotFound(m),
            other => failed(1, other.to_string()),
        };
        let files = self
            .retrying(job, &failed, || self.hub.list_files(repo, rev))
            .await
            .map_err(|e| match e {
                Retried::Fatal(e) => fatal(e),
                Retried::Exhausted(e) => e,
            })?;
        let file = choose_file(&files, selector.as_deref())
            .map_err(|m| HiveError::ModelNotFound(format!("{model_ref}: {m}")))?;
        let model_files = files_of_model(&files, &file)
            .map_err(|m| HiveError::ModelNotFound(format!("{model_ref}: {m}")))?;
        // Each revision in its own folder, so a pinned one never overwrites another.
        let dir = match revision {
            Some(r) => self.models_dir.join(format!("{repo}@{r}")),
            None => self.models_dir.join(repo),
        };
        let target = dir.join(&file);
        tokio::fs::create_dir_all(target.parent().unwrap_or(&dir))
            .await
            .map_err(|e| HiveError::io(format!("cannot create {}", dir.display()), e))?;

        let mut remotes = Vec::with_capacity(model_files.len());
        for name in &model_files {
            let info = self
                .retrying(job, &failed, || self.hub.file_info(repo, rev, name))
                .await
                .map_err(|e| match e {
                    Retried::Fatal(e) => fatal(e),
                    Retried::Exhausted(e) => e,
                })?;
            remotes.push(info);
        }
        let targets: Vec<PathBuf> = model_files.iter().map(|f| dir.join(f)).collect();
        self.check_before_download(model_ref, &remotes, &targets, job, &failed)
            .await?;
        // A split model's shards one after the other, its progress counted over all of them;
        // each stays a `.partial` file until every one is verified.
        let total: u64 = remotes.iter().map(|r| r.size).sum();
        let partials: Vec<PathBuf> = targets.iter().map(|t| partial_of(t)).collect();
        let mut done = 0;
        let mut digests = Vec::new();
        for ((name, partial), info) in model_files.iter().zip(&partials).zip(remotes) {
            let progress = Progress {
                before: done,
                total,
            };
            let mut remote = Some(info);
            let mut attempt = 0;
            let (sha256, size) = loop {
                attempt += 1;
                match (self.attempt((repo, rev, name), partial, &mut remote, progress, job)).await {
                    Ok(done) => break done,
                    Err(Attempt::Fatal(e)) => return Err(fatal(e)),
                    Err(Attempt::Retry(cause)) if attempt >= MAX_ATTEMPTS => {
                        for partial in &partials {
                            let _ = tokio::fs::remove_file(partial).await;
                        }
                        return Err(failed(attempt, cause));
                    }
                    Err(Attempt::Retry(cause)) => self.back_off(job, attempt, cause).await,
                }
            };
            done += size;
            digests.push(sha256);
        }
        for (partial, target) in partials.iter().zip(&targets) {
            tokio::fs::rename(partial, target)
                .await
                .map_err(|e| HiveError::io("cannot move the download into place", e))?;
        }
        Ok(ModelEntry {
            id: uuid::Uuid::new_v4().to_string(),
            provider: Provider::Hf,
            reference: model_ref.clone(),
            local_path: target.display().to_string(),
            size_bytes: done,
            // One file's digest; a split model has several (each checked against the Hub's).
            sha256: match digests.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
            quantization: quant_of_file(&file),
            downloaded_at_unix: now_unix(),
            settings: Default::default(),
        })
    }

    /// Reads the file's GGUF header from the Hub first (its first megabytes, by a `Range`
    /// request) and refuses — before the body is fetched — a model the worker cannot run
    /// (architecture, format, tensors) or this node cannot hold (weights plus the attention
    /// cache at the model's context).
    async fn check_before_download(
        &self,
        canonical: &ModelRef,
        remotes: &[RemoteFile],
        targets: &[PathBuf],
        job: &Job,
        failed: &impl Fn(u32, String) -> HiveError,
    ) -> Result<(), HiveError> {
        let (Some(remote), Some(target)) = (remotes.first(), targets.first()) else {
            return Err(HiveError::Internal("a model of no files".into()));
        };
        // What is left to write must fit on the disk (a resumed download has part of it, a
        // split one may have whole shards).
        let on_disk = |target: &PathBuf| {
            (std::fs::metadata(target).or_else(|_| std::fs::metadata(partial_of(target))))
                .map_or(0, |m| m.len())
        };
        let needed: u64 = (remotes.iter().zip(targets))
            .map(|(remote, target)| remote.size.saturating_sub(on_disk(target)))
            .sum();
        if let Some(free) = self.disk_free_bytes()
            && needed > free
        {
            return Err(HiveError::InsufficientDisk {
                model_ref: canonical.clone(),
                required_mb: needed.div_ceil(1 << 20),
                available_mb: free >> 20,
            });
        }
        let probe = target.with_extension("gguf.header");
        let mut len = HEADER_PROBE_BYTES.min(remote.size);
        let info = loop {
            let prefix = self
                .retrying(job, failed, || self.hub.fetch_prefix(remote, len))
                .await
                .map_err(|e| match e {
                    Retried::Fatal(e) => failed(1, e.to_string()),
                    Retried::Exhausted(e) => e,
                })?;
            tokio::fs::write(&probe, &prefix)
                .await
                .map_err(|e| HiveError::io(format!("cannot write {}", probe.display()), e))?;
            let checked = self.preflight.check_file(&probe, true).await;
            let _ = tokio::fs::remove_file(&probe).await;
            match checked {
                Ok(info) => break info,
                // A header longer than the probe (large vocabularies): read further.
                Err(HiveError::InvalidModel(reason))
                    if reason.contains("GGUF header") && len < remote.size =>
                {
                    len = (len * 4).min(remote.size);
                }
                Err(HiveError::InvalidModel(reason)) => {
                    return Err(HiveError::InvalidModel(format!(
                        "{canonical} was not downloaded: {reason}"
                    )));
                }
                Err(e) => return Err(e),
            }
        };
        let size: u64 = remotes.iter().map(|r| r.size).sum();
        let required_mb = Preflight::required_mb(size, &info);
        // Which backend will load it is not known yet: the RAM, or a larger GPU, may.
        let largest_gpu_mb = (crate::detect::detect_off_runtime()
            .await
            .vram_free_mb
            .values()
            .flatten()
            .copied())
        .max();
        let room_mb = match (self.preflight.available_mb(), largest_gpu_mb) {
            (Some(ram), Some(vram)) => Some(ram.max(vram)),
            (ram, _) => ram,
        };
        if let Some(available_mb) = room_mb
            && required_mb > available_mb
        {
            return Err(HiveError::InsufficientRam {
                model_ref: canonical.clone(),
                required_mb,
                available_mb,
            });
        }
        self.logs.hive(format!(
            "{canonical}: header checked ({} {}, {} MB with the cache at {} tokens); downloading",
            info.architecture, info.quantization, required_mb, info.context_length
        ));
        Ok(())
    }

    /// One attempt: resume `partial` to the full size, then check its sha256.
    async fn attempt(
        &self,
        (repo, revision, file): (&str, &str, &str),
        partial: &Path,
        remote: &mut Option<RemoteFile>,
        progress: Progress,
        job: &Job,
    ) -> Result<(String, u64), Attempt> {
        let info = match remote {
            Some(info) => info.clone(),
            None => {
                let info = self
                    .hub
                    .file_info(repo, revision, file)
                    .await
                    .map_err(Attempt::from)?;
                *remote = Some(info.clone());
                info
            }
        };
        let io =
            |e: std::io::Error| Attempt::Retry(format!("cannot write {}: {e}", partial.display()));
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .await
            .map_err(io)?;
        let mut offset = out.metadata().await.map_err(io)?.len();
        if offset > info.size {
            out.set_len(0).await.map_err(io)?;
            offset = 0;
        }
        if offset < info.size {
            let started = Instant::now();
            let mut last = Instant::now() - PROGRESS_EVERY;
            let total = info.size;
            let Progress {
                before,
                total: model_total,
            } = progress;
            let mut counted = offset;
            let result = self
                .hub
                .fetch_from(&info, &mut out, offset, |written| {
                    self.metrics
                        .download_bytes
                        .add(written.saturating_sub(counted));
                    counted = written;
                    if last.elapsed() >= PROGRESS_EVERY || written == total {
                        last = Instant::now();
                        let secs = started.elapsed().as_secs_f64().max(1e-3);
                        job.emit(DownloadEvent::Downloading {
                            bytes_downloaded: before + written,
                            bytes_total: model_total,
                            speed_mbps: (written - offset) as f64 / secs / 1e6,
                        });
                    }
                })
                .await;
            result.map_err(Attempt::from)?;
        }
        drop(out);
        verify(partial, &info, job).await
    }

    async fn back_off(&self, job: &Job, attempt: u32, cause: String) {
        let delay = self.backoff * 2u32.saturating_pow(attempt - 1);
        self.logs.hive(format!(
            "download attempt {attempt}/{MAX_ATTEMPTS} failed ({cause}); retrying in {delay:?}"
        ));
        job.emit(DownloadEvent::Retrying {
            attempt,
            max_attempts: MAX_ATTEMPTS,
            delay_ms: delay.as_millis() as u64,
            error: cause,
        });
        tokio::time::sleep(delay).await;
    }

    /// Runs a metadata request with the same retry policy as the transfer.
    async fn retrying<T, F>(
        &self,
        job: &Job,
        failed: &impl Fn(u32, String) -> HiveError,
        mut request: impl FnMut() -> F,
    ) -> Result<T, Retried>
    where
        F: std::future::Future<Output = Result<T, HubError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match request().await {
                Ok(v) => return Ok(v),
                Err(HubError::Transient(cause)) if attempt < MAX_ATTEMPTS => {
                    self.back_off(job, attempt, cause).await;
                }
                Err(HubError::Transient(cause)) => {
                    return Err(Retried::Exhausted(failed(attempt, cause)));
                }
                Err(e) => return Err(Retried::Fatal(e)),
            }
        }
    }
}

/// Where one file's bytes fall in the whole model's: the bytes of the shards before it, and
/// of all.
#[derive(Debug, Clone, Copy)]
struct Progress {
    before: u64,
    total: u64,
}

enum Attempt {
    Retry(String),
    Fatal(HubError),
}

impl From<HubError> for Attempt {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Transient(cause) => Self::Retry(cause),
            other => Self::Fatal(other),
        }
    }
}

enum Retried {
    Fatal(HubError),
    Exhausted(HiveError),
}

/// Where the download of `target` is written until it is verified.
fn partial_of(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy());
    target.with_file_name(format!("{}.partial", name.unwrap_or_default()))
}

fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), size))
}

/// Hashes the finished download and holds it against the Hub's size and sha256; a mismatch
/// deletes the file so the next attempt starts over.
async fn verify(partial: &Path, info: &RemoteFile, job: &Job) -> Result<(String, u64), Attempt> {
    let io = |e: std::io::Error| Attempt::Retry(format!("cannot read {}: {e}", partial.display()));
    job.emit(DownloadEvent::Verifying);
    let path = partial.to_owned();
    let (digest, size) = tokio::task::spawn_blocking(move || sha256_of(&path))
        .await
        .map_err(|e| Attempt::Retry(format!("hashing failed: {e}")))?
        .map_err(io)?;
    if size != info.size {
        let _ = tokio::fs::remove_file(partial).await;
        return Err(Attempt::Retry(format!(
            "size mismatch: expected {} bytes, got {size}",
            info.size
        )));
    }
    if let Some(expected) = &info.sha256
        && *expected != digest
    {
        let _ = tokio::fs::remove_file(partial).await;
        return Err(Attempt::Retry(format!(
            "sha256 mismatch: the Hub reports {expected}, the download hashes to {digest}"
        )));
    }
    Ok((digest, size))
}
