//! A team of threads that a forward pass keeps for its whole length.
//!
//! A pass runs a few hundred short parallel stages (five matrix products per layer and the
//! per-token work between them). Between stages the team's threads wait by spinning, so the
//! next stage starts within a fraction of a microsecond instead of after a wake-up; a thread
//! that has had nothing to do for [`SPIN`] sleeps until the next stage, so an idle worker
//! costs no CPU. The calling thread is one of the team: a team of `n` threads starts `n - 1`.
//!
//! A stage is a count of tasks and one function called with each task's index. Each thread
//! starts on a contiguous share of the tasks and then helps with the others' shares, so a
//! matrix is read in long runs per thread and a thread slowed down (by another process on its
//! core) is caught up by the rest.

// A stage lives on its caller's stack and helpers reach it through a pointer.
#![allow(unsafe_code)]

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a thread spins for the next stage before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    /// One stage at a time: a team is shared by the slots of a worker.
    running: Mutex<()>,
}

/// One stage, on the stack of the thread that runs it, for as long as any helper uses it.
struct Stage<'a> {
    /// Each thread's share: a contiguous run of tasks, so each thread reads its part of a
    /// matrix front to back (the hardware prefetchers follow it); a thread done with its own
    /// share helps with the others'.
    shares: Vec<Share>,
    task: &'a (dyn Fn(usize) + Sync),
    /// Helpers that have not yet finished with this stage.
    busy: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// The next unclaimed task of a share, and its end; on a cache line of its own.
#[repr(align(64))]
struct Share {
    next: AtomicUsize,
    end: usize,
}

impl Stage<'_> {
    /// Thread `me` runs tasks, its own share first, until none is left.
    fn work(&self, me: usize) {
        let n = self.shares.len();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            for share in (0..n).map(|k| &self.shares[(me + k) % n]) {
                loop {
                    let i = share.next.fetch_add(1, Ordering::Relaxed);
                    if i >= share.end {
                        break;
                    }
                    (self.task)(i);
                }
            }
        }));
        if let Err(payload) = result {
            // No other task starts; the payload is raised again by the stage's caller.
            for share in &self.shares {
                share.next.store(share.end, Ordering::Relaxed);
            }
            let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
        }
    }
}

struct Shared {
    /// Counts the stages posted; a helper works on each new one once.
    epoch: AtomicUsize,
    stage: AtomicPtr<Stage<'static>>,
    stop: AtomicBool,
    /// Helpers asleep, and what wakes them.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl Team {
    /// A team of `threads` threads, the caller of [`Team::run`] included.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            stage: AtomicPtr::new(std::ptr::null_mut()),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut team = Self {
            shared: Arc::clone(&shared),
            helpers: Vec::new(),
            running: Mutex::new(()),
        };
        for i in 1..threads.max(1) {
            let shared = Arc::clone(&shared);
            let helper = thread::Builder::new()
                .name(format!("rbee-cpu-{i}"))
                .spawn(move || shared.serve(i))?;
            team.helpers.push(helper);
        }
        Ok(team)
    }

    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Calls `task(i)` for every `i` in `0..tasks`, spread over the team; returns when all
    /// have returned. A panicking task is raised again here, after the other threads stop.
    pub fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if tasks <= 1 || self.helpers.is_empty() {
            (0..tasks).for_each(task);
            return;
        }
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let threads = self.threads();
        let stage = Stage {
            shares: (0..threads)
                .map(|k| Share {
                    next: AtomicUsize::new(k * tasks / threads),
                    end: (k + 1) * tasks / threads,
                })
                .collect(),
            task,
            busy: AtomicUsize::new(self.helpers.len()),
            panic: Mutex::new(None),
        };
        let shared = &self.shared;
        // SAFETY: helpers only dereference the pointer between seeing this stage's epoch and
        // decrementing `busy`, and this function returns only after `busy` reaches zero, so
        // the stage outlives every use; its lifetime is erased only to share the pointer.
        let erased = (&stage as *const Stage<'_>).cast::<Stage<'static>>();
        shared.stage.store(erased.cast_mut(), Ordering::Release);
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        shared.wake_sleepers();
        stage.work(0);
        let mut spins = 0u32;
        while stage.busy.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                // A helper may be asleep or preempted: give its core back.
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        shared.stage.store(std::ptr::null_mut(), Ordering::Relaxed);
        if let Some(payload) = stage.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
            panic::resume_unwind(payload);
        }
    }

    /// Hands each of `items` to one call of `task`, spread over the team.
    pub fn for_each<T: Send>(&self, items: Vec<T>, task: impl Fn(T) + Sync) {
        let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
        self.run(items.len(), &|i| {
            let item = items[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(item) = item {
                task(item);
            }
        });
    }
}

impl Shared {
    /// A helper's life: each new stage, worked on until its tasks run out.
    fn serve(&self, me: usize) {
        let mut seen = 0;
        loop {
            let epoch = self.next_epoch(seen);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            seen = epoch;
            let stage = self.stage.load(Ordering::Acquire);
            // SAFETY: see `Team::run`; the stage lives until `busy` is decremented below.
            let stage = unsafe { &*stage };
            stage.work(me);
            stage.busy.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits for an epoch after `seen`: spinning at first, asleep after [`SPIN`].
    fn next_epoch(&self, seen: usize) -> usize {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch != seen {
                return epoch;
            }
            spins = spins.saturating_add(1);
            if spins < 256 {
                std::hint::spin_loop();
                continue;
            }
            if start.elapsed() < SPIN {
                // Spinning on, but letting whatever else this core has run first.
                thread::yield_now();
                continue;
            }
            let mut guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            while self.epoch.load(Ordering::SeqCst) == seen {
                guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn wake_sleepers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        self.shared.wake_sleepers();
        for helper in self.helpers.drain(..) {
            let _ = helper.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_whatever_the_team_size() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).unwrap();
            for tasks in [0, 1, 2, 7, 1000] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                team.run(tasks, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn items_are_each_handed_to_one_task() {
        let team = Team::new(3).unwrap();
        let mut out = vec![0u32; 100];
        let items: Vec<(usize, &mut [u32])> = out.chunks_mut(7).enumerate().collect();
        team.for_each(items, |(i, chunk)| chunk.fill(i as u32 + 1));
        for (i, chunk) in out.chunks(7).enumerate() {
            assert!(chunk.iter().all(|&v| v == i as u32 + 1));
        }
    }

    #[test]
    fn a_panicking_task_is_raised_in_the_caller_and_the_team_goes_on() {
        let team = Team::new(2).unwrap();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(64, &|i| assert!(i != 40, "task 40"));
        }));
        assert!(result.is_err());
        let done = AtomicUsize::new(0);
        team.run(64, &|_| {
            done.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(done.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn stages_from_several_threads_take_turns() {
        let team = Team::new(2).unwrap();
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        team.run(10, &|i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 45);
                    }
                });
            }
        });
    }

    #[test]
    fn a_helper_asleep_wakes_for_the_next_stage() {
        let team = Team::new(2).unwrap();
        while team.shared.sleepers.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        let seen: Mutex<Vec<thread::ThreadId>> = Mutex::new(Vec::new());
        // Long enough tasks that the caller cannot finish them all before the helper wakes.
        team.run(200, &|_| {
            seen.lock().unwrap().push(thread::current().id());
            thread::sleep(Duration::from_micros(200));
        });
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 200);
        assert!(
            seen.iter().any(|&id| id != thread::current().id()),
            "the helper woke"
        );
    }
}
