//! The worker's scheduler: one thread that advances every request in progress together.
//!
//! Each step is one forward pass holding the next token of every decoding sequence and at
//! most [`PREFILL_CHUNK`] prompt tokens of the requests still reading their prompts (oldest
//! first), so the weights are read once per step for all of them, and a long prompt delays
//! the running streams by one chunk at most. A cancel (DELETE, a client gone, shutdown) is
//! seen between steps.
//!
//! Each slot owns a KV cache and remembers the tokens it holds after its request ends. A new
//! request takes the free slot whose tokens share the longest prefix with its prompt and
//! prefills only the rest (the next turn of a chat, a shared system prompt). The caches'
//! number is the worker's slot count and each is bounded by the context, so memory is too.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rbee_api::Narration;
use rbee_api::worker::{EndEvent, InferenceEvent, StopReason, TokenEvent, TokenLogprob, TokenProb};
use tokio_util::sync::CancellationToken;

use crate::engine::{Cache, Engine, Feed, Generated, Job};
use crate::metrics::WorkerMetrics;
use crate::sampler::Sampler;
use crate::text_stream::TextStream;

const ACTOR: &str = "llm-worker-rbee";
/// Prompt tokens run through the model per step; bounds both the attention scratch memory
/// and how long one prompt holds up the streams decoding beside it.
pub const PREFILL_CHUNK: usize = 256;

/// Slots a worker has unless told otherwise.
pub const DEFAULT_SLOTS: usize = 4;

/// The slots a worker gets unless told: [`DEFAULT_SLOTS`], fewer when that many caches
/// filled to the whole context (`cache_bytes` each) would take more than half of the
/// `available` memory; always at least one.
pub fn slots_for_memory(cache_bytes: u64, available: Option<u64>) -> usize {
    match available {
        Some(available) if cache_bytes > 0 => usize::try_from(available / 2 / cache_bytes)
            .map_or(DEFAULT_SLOTS, |n| n.clamp(1, DEFAULT_SLOTS)),
        _ => DEFAULT_SLOTS,
    }
}

/// A request handed to the scheduler: its job, how to stop it, and where its events go.
pub struct Request {
    pub job: Job,
    pub cancel: CancellationToken,
    /// Receives narration and token events as they are made.
    pub emit: Box<dyn FnMut(InferenceEvent) + Send>,
    /// Called once with the request's outcome, after its slot is free again.
    pub done: Box<dyn FnOnce(Generated) + Send>,
}

/// The handle requests are submitted through; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct Scheduler {
    requests: mpsc::Sender<Request>,
}

impl Scheduler {
    /// Starts the scheduling thread for `engine` with `slots` KV caches.
    pub fn start(engine: Arc<Engine>, slots: usize, metrics: Arc<WorkerMetrics>) -> Self {
        let (requests, inbox) = mpsc::channel();
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                cache: engine.new_cache(),
                held: Vec::new(),
                active: None,
            })
            .collect();
        let mut batcher = Batcher {
            engine,
            metrics,
            slots,
            waiting: VecDeque::new(),
            admitted: 0,
        };
        std::thread::Builder::new()
            .name("rbee-scheduler".into())
            .spawn(move || batcher.serve(&inbox))
            .expect("the scheduler thread starts");
        Self { requests }
    }

    /// Queues `request`; it starts at the next step with a free slot.
    pub fn submit(&self, request: Request) {
        if let Err(mpsc::SendError(request)) = self.requests.send(request) {
            // The thread is gone only if it panicked: answer rather than leave the client.
            let failure = Some("the worker's scheduler stopped".to_owned());
            let end = end_event(
                &request.job,
                &Progress::default(),
                StopReason::Cancelled,
                Duration::ZERO,
            );
            (request.done)(Generated { end, failure });
        }
    }
}

struct Slot {
    cache: Cache,
    /// The tokens whose keys and values `cache` holds, in order.
    held: Vec<u32>,
    active: Option<Active>,
}

/// A request being served by a slot.
struct Active {
    request: Request,
    /// Its place in admission order: the oldest prompts are read first.
    order: u64,
    /// Prompt tokens already in the cache (reused or computed).
    fed: usize,
    /// The sampled token to run through the model at the next step.
    next: [u32; 1],
    decoding: bool,
    sampler: Sampler,
    text: TextStream,
    /// Log-probabilities of generated tokens whose text is not sent yet.
    logprobs: Vec<TokenLogprob>,
    /// The text sent so far, kept when tools are offered (the calls are read from it).
    said: String,
    progress: Progress,
    started: Instant,
}

#[derive(Default)]
struct Progress {
    tokens_reused: usize,
    tokens_out: usize,
    prompt_time: Duration,
    decode_time: Duration,
    decode_steps: usize,
}

struct Batcher {
    engine: Arc<Engine>,
    metrics: Arc<WorkerMetrics>,
    slots: Vec<Slot>,
    /// Requests that arrived while every slot was taken (the worker's slot count bounds them).
    waiting: VecDeque<Request>,
    admitted: u64,
}

impl Batcher {
    fn serve(&mut self, inbox: &mpsc::Receiver<Request>) {
        loop {
            if self.slots.iter().all(|s| s.active.is_none()) && self.waiting.is_empty() {
                match inbox.recv() {
                    Ok(request) => self.waiting.push_back(request),
                    Err(mpsc::RecvError) => return,
                }
            }
            self.waiting.extend(inbox.try_iter());
            self.admit();
            self.drop_cancelled();
            if self.slots.iter().any(|s| s.active.is_some()) {
                // A bug that panics in a forward pass fails the requests in progress (each
                // stream ends with an error) instead of leaving their streams open forever.
                let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| self.step()));
                if let Err(panic) = stepped {
                    self.fail_all(&panic_message(panic.as_ref()));
                }
            }
        }
    }

    /// Ends every request in progress with `message` and empties the caches, whose state is
    /// unknown after a failed pass.
    fn fail_all(&mut self, message: &str) {
        tracing::error!("a forward pass panicked: {message}");
        for slot in &mut self.slots {
            slot.held.clear();
            self.engine.keep_prefix(&mut slot.cache, 0);
            let failure = format!("the forward pass panicked: {message}");
            slot.finish(StopReason::Cancelled, Some(failure));
        }
    }

    /// Gives waiting requests the free slots, each the one sharing the longest prefix with
    /// its prompt.
    fn admit(&mut self) {
        while let Some(request) = self.waiting.pop_front() {
            if request.cancel.is_cancelled() {
                let end = end_event(
                    &request.job,
                    &Progress::default(),
                    StopReason::Cancelled,
                    Duration::ZERO,
                );
                (request.done)(Generated { end, failure: None });
                continue;
            }
            let prompt = &request.job.prompt_tokens;
            let free = (self.slots.iter_mut())
                .filter(|s| s.active.is_none())
                .max_by_key(|s| common_prefix(&s.held, prompt));
            let Some(slot) = free else {
                self.waiting.push_front(request);
                return;
            };
            // At least the prompt's last token runs, for the logits of the first new one.
            let wanted = common_prefix(&slot.held, prompt).min(prompt.len() - 1);
            let kept = self.engine.keep_prefix(&mut slot.cache, wanted);
            slot.held.truncate(kept);
            self.metrics.prompt_tokens_reused.add(kept as u64);
            let mut active = Active {
                order: self.admitted,
                fed: kept,
                next: [0],
                decoding: false,
                sampler: Sampler::new(request.job.sampling.clone()),
                text: TextStream::new(request.job.stop.clone()),
                logprobs: Vec::new(),
                said: String::new(),
                progress: Progress {
                    tokens_reused: kept,
                    ..Progress::default()
                },
                started: Instant::now(),
                request,
            };
            self.admitted += 1;
            active.narrate_start(kept);
            slot.active = Some(active);
        }
    }

    fn drop_cancelled(&mut self) {
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|a| a.request.cancel.is_cancelled())
            {
                slot.finish(StopReason::Cancelled, None);
            }
        }
    }

    /// One forward pass for every active slot that has tokens to run this step.
    fn step(&mut self) {
        let mut budget = PREFILL_CHUNK;
        let mut prefilling: Vec<(u64, usize)> = (self.slots.iter().enumerate())
            .filter_map(|(i, s)| {
                s.active
                    .as_ref()
                    .filter(|a| !a.decoding)
                    .map(|a| (a.order, i))
            })
            .collect();
        prefilling.sort_unstable();
        // How many prompt tokens each slot runs this step (decoding ones run one).
        let mut chunk = vec![0usize; self.slots.len()];
        for &(_, i) in &prefilling {
            let active = self.slots[i].active.as_ref().expect("an active slot");
            let n = (active.request.job.prompt_tokens.len() - active.fed).min(budget);
            chunk[i] = n;
            budget -= n;
            if budget == 0 {
                break;
            }
        }
        let started = Instant::now();
        let mut members = Vec::new();
        let mut feeds = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Slot { cache, active, .. } = slot;
            let Some(active) = active.as_ref() else {
                continue;
            };
            let (tokens, logits) = if active.decoding {
                (&active.next[..], true)
            } else if chunk[i] > 0 {
                let prompt = &active.request.job.prompt_tokens;
                let end = active.fed + chunk[i];
                (&prompt[active.fed..end], end == prompt.len())
            } else {
                continue;
            };
            members.push(i);
            feeds.push(Feed {
                tokens,
                cache,
                logits,
            });
        }
        let tokens_run: Vec<Vec<u32>> = feeds.iter().map(|f| f.tokens.to_vec()).collect();
        let result = self.engine.forward_batch(&mut feeds);
        drop(feeds);
        self.metrics.batch_size.observe(members.len() as f64);
        let took = started.elapsed();
        let logits = match result {
            Ok(logits) => logits,
            Err(e) => {
                let message = crate::model_file::candle_message(&e);
                tracing::error!("inference failed: {message}");
                for &i in &members {
                    let slot = &mut self.slots[i];
                    slot.held.clear();
                    self.engine.keep_prefix(&mut slot.cache, 0);
                    slot.finish(StopReason::Cancelled, Some(message.clone()));
                }
                return;
            }
        };
        for ((i, ran), logits) in members.into_iter().zip(tokens_run).zip(logits) {
            let slot = &mut self.slots[i];
            slot.held.extend_from_slice(&ran);
            let active = slot.active.as_mut().expect("an active slot");
            if active.decoding {
                active.progress.decode_time += took;
                active.progress.decode_steps += 1;
            } else {
                active.fed += ran.len();
                if active.fed == active.request.job.prompt_tokens.len() {
                    active.progress.prompt_time = active.started.elapsed();
                    active.decoding = true;
                }
            }
            if let Some(logits) = logits {
                match active.advance(&self.engine, &logits) {
                    Ok(None) => {}
                    Ok(Some(reason)) => slot.finish(reason, None),
                    Err(grammar) => {
                        let message = format!("the output grammar failed: {grammar}");
                        slot.finish(StopReason::Cancelled, Some(message));
                    }
                }
            }
        }
    }
}

impl Slot {
    /// Ends the slot's request with `reason` (or `failure`) and frees the slot.
    fn finish(&mut self, reason: StopReason, failure: Option<String>) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let job = &active.request.job;
        let mut end = end_event(job, &active.progress, reason, active.started.elapsed());
        if failure.is_none() {
            end.tools = job.tools.as_ref().map(|t| t.read(&active.said));
        }
        (active.request.emit)(narrate(
            "inference_complete",
            format!(
                "Finished: {} tokens in {:.2} s ({:.1} tok/s), stop reason {}",
                end.tokens_out,
                active.started.elapsed().as_secs_f64(),
                end.decode_tokens_per_sec,
                reason.as_str()
            ),
        ));
        if let Some(message) = &failure {
            tracing::error!(job = %job.job_id, "inference failed: {message}");
        }
        (active.request.done)(Generated { end, failure });
    }
}

impl Active {
    fn emit(&mut self, event: InferenceEvent) {
        if let (InferenceEvent::Token(t), Some(_)) = (&event, &self.request.job.tools) {
            self.said.push_str(&t.t);
        }
        (self.request.emit)(event);
    }

    fn narrate_start(&mut self, reused: usize) {
        let job = &self.request.job;
        let start = format!(
            "Starting inference (job {}, up to {} tokens)",
            job.job_id, job.max_tokens
        );
        let note = job.note.clone();
        let tokenized = format!("Tokenized prompt: {} tokens", job.prompt_tokens.len());
        self.emit(narrate("inference_start", start));
        if let Some(note) = note {
            self.emit(narrate("chat_template", note));
        }
        self.emit(narrate("tokenize", tokenized));
        if reused > 0 {
            self.emit(narrate(
                "prompt_reuse",
                format!("Reusing {reused} prompt tokens already in the slot's cache"),
            ));
        }
    }

    /// Samples the next token from `logits` (among those the output grammar allows) and sends
    /// its text; the stop reason when the answer is complete; `Err` when the grammar fails.
    fn advance(&mut self, engine: &Engine, logits: &[f32]) -> Result<Option<StopReason>, String> {
        let masked;
        let logits = match &mut self.request.job.constraint {
            Some(grammar) => {
                let mut l = logits.to_vec();
                grammar.mask(&mut l)?;
                masked = l;
                &masked[..]
            }
            None => logits,
        };
        let (token, logprobs) = self
            .sampler
            .sample_reporting(logits, self.request.job.logprobs);
        let tokenizer = engine.tokenizer();
        let tokens_out = self.progress.tokens_out;
        if tokenizer.is_end_of_generation(token) {
            self.flush(tokens_out.saturating_sub(1));
            return Ok(Some(StopReason::Eos));
        }
        let mut complete = false;
        if let Some(grammar) = &mut self.request.job.constraint {
            grammar.accept(token)?;
            complete = grammar.is_finished();
        }
        self.progress.tokens_out += 1;
        if let Some(l) = logprobs {
            let prob = |(id, logprob)| token_prob(tokenizer, id, logprob);
            self.logprobs.push(TokenLogprob {
                chosen: prob((token, l.chosen)),
                top: l.top.into_iter().map(prob).collect(),
            });
        }
        let out = self.text.push(&tokenizer.token_bytes(token));
        if !out.text.is_empty() {
            let lp = std::mem::take(&mut self.logprobs);
            self.emit(InferenceEvent::Token(TokenEvent {
                t: out.text,
                i: tokens_out,
                lp,
            }));
        }
        if out.stopped {
            return Ok(Some(StopReason::Stop));
        }
        if complete {
            // Nothing can follow: the grammar's end is the answer's end.
            self.flush(tokens_out);
            return Ok(Some(StopReason::Eos));
        }
        if self.progress.tokens_out >= self.request.job.max_tokens {
            self.flush(tokens_out);
            return Ok(Some(StopReason::MaxTokens));
        }
        self.next = [token];
        Ok(None)
    }

    /// Sends text held back (an incomplete character, a possible stop string's start).
    fn flush(&mut self, index: usize) {
        let rest = self.text.finish();
        if !rest.is_empty() {
            let lp = std::mem::take(&mut self.logprobs);
            self.emit(InferenceEvent::Token(TokenEvent {
                t: rest,
                i: index,
                lp,
            }));
        }
    }
}

fn token_prob(tokenizer: &crate::tokenizer::Tokenizer, id: u32, logprob: f32) -> TokenProb {
    let mut bytes = tokenizer.token_bytes(id).to_vec();
    if bytes.is_empty() {
        // A control token (end of turn, …) has no text in the answer; name it.
        bytes = tokenizer
            .token_text(id)
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
    }
    TokenProb {
        id,
        token: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        logprob,
    }
}

fn end_event(
    job: &Job,
    progress: &Progress,
    stop_reason: StopReason,
    duration: Duration,
) -> EndEvent {
    let decode_tps = rate(progress.decode_steps, progress.decode_time);
    EndEvent {
        job_id: job.job_id.clone(),
        tokens_out: progress.tokens_out,
        duration_ms: duration.as_millis() as u64,
        stop_reason,
        tokens_in: job.prompt_tokens.len(),
        tokens_reused: progress.tokens_reused,
        prompt_ms: progress.prompt_time.as_millis() as u64,
        prompt_tokens_per_sec: rate(
            job.prompt_tokens.len() - progress.tokens_reused,
            progress.prompt_time,
        ),
        decode_tokens_per_sec: decode_tps,
        tools: None,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    (panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn narrate(action: &str, human: String) -> InferenceEvent {
    InferenceEvent::Narration(Narration::new(ACTOR, action, human))
}

fn rate(count: usize, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_default_to_four_and_shrink_to_what_half_the_memory_holds() {
        const MB: u64 = 1 << 20;
        assert_eq!(slots_for_memory(25 * MB, Some(24 * 1024 * MB)), 4);
        assert_eq!(slots_for_memory(25 * MB, None), 4);
        assert_eq!(slots_for_memory(340 * MB, Some(1500 * MB)), 2);
        assert_eq!(slots_for_memory(340 * MB, Some(400 * MB)), 1);
    }

    #[test]
    fn the_common_prefix_stops_at_the_first_difference() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
