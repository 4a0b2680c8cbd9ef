//! One allocation for every weight matrix, on 2 MiB pages where the kernel allows.
//!
//! Decoding streams all weights from memory once per token; on 4 KiB pages that costs a
//! page-table walk every 4 KiB, on 2 MiB pages one every 2 MiB (measured: ~10% more decode
//! tokens/s on SmolLM2). The arena is an anonymous mapping asked to use transparent huge
//! pages before anything is written to it; pages never written are never backed, so sizing it
//! for the largest possible need costs no memory. Regions are handed out once, in order, and
//! filled by the loader before anything reads them.

#![allow(unsafe_code)]

use std::num::NonZeroUsize;
use std::ops::{Deref, Range};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

const HUGE_PAGE: usize = 2 << 20;
/// Regions start on cache lines.
pub const ALIGN: usize = 64;

pub struct Arena {
    /// The whole mapping (from `mmap`, unmapped on drop).
    map: NonNull<u8>,
    map_len: usize,
    /// The usable part, starting on a huge-page boundary.
    base: *mut u8,
    len: usize,
    /// Bytes of `base..base + len` handed out so far.
    next: Mutex<usize>,
}

// SAFETY: the arena is plain memory; regions are disjoint, each written once by the one
// caller of `fill` that received it and only read afterwards.
unsafe impl Send for Arena {}
// SAFETY: as above; the cursor is behind a mutex.
unsafe impl Sync for Arena {}

impl Arena {
    /// Reserves `len` bytes of address space (nothing is backed until written).
    pub fn new(len: usize) -> std::io::Result<Arc<Self>> {
        let map_len = len.max(1) + HUGE_PAGE;
        let length = NonZeroUsize::new(map_len).expect("non-zero length");
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let map = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?
        .cast::<u8>();
        let skip = map.as_ptr().align_offset(HUGE_PAGE);
        // SAFETY: `skip < HUGE_PAGE`, so `base..base + len` lies inside the mapping.
        let base = unsafe { map.as_ptr().add(skip) };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use nix::sys::mman::{MmapAdvise, madvise};
            // SAFETY: advice on our own, still untouched mapping. Without huge pages (the
            // kernel refuses, or THP is off) the arena simply stays on small pages.
            let _ = unsafe { madvise(map.cast(), map_len, MmapAdvise::MADV_HUGEPAGE) };
        }
        Ok(Arc::new(Self {
            map,
            map_len,
            base,
            len,
            next: Mutex::new(0),
        }))
    }

    /// Hands the next `len` bytes (zeroed) to `write`, then returns them as a read-only
    /// region; `None` when the arena is full.
    pub fn fill<E>(
        self: &Arc<Self>,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Option<Result<Region, E>> {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let start = next.next_multiple_of(ALIGN);
            if start.checked_add(len)? > self.len {
                return None;
            }
            *next = start + len;
            start
        };
        // SAFETY: `start..start + len` is inside the arena and was never handed out before
        // (the cursor only moves forward), so nothing else refers to these bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.base.add(start), len) };
        Some(write(bytes).map(|()| Region {
            arena: Arc::clone(self),
            range: start..start + len,
        }))
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no region outlives the arena (each holds an `Arc`).
        let _ = unsafe { munmap(self.map.cast(), self.map_len) };
    }
}

/// Bytes of an [`Arena`], written once by [`Arena::fill`].
pub struct Region {
    arena: Arc<Arena>,
    range: Range<usize>,
}

impl Deref for Region {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the range lies inside the arena, its writer has finished (`fill` returned)
        // and no one writes it again.
        unsafe {
            std::slice::from_raw_parts(self.arena.base.add(self.range.start), self.range.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_keep_what_was_written_and_the_arena_refuses_to_overfill() {
        let arena = Arena::new(200).unwrap();
        let filled = |len, value| {
            let write = |b: &mut [u8]| {
                b.fill(value);
                Ok::<_, ()>(())
            };
            arena.fill(len, write).unwrap().unwrap()
        };
        let (a, b) = (filled(100, 7), filled(36, 9));
        assert!(a.iter().all(|&v| v == 7) && a.len() == 100);
        assert!(b.iter().all(|&v| v == 9) && b.len() == 36);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert!(
            arena.fill(40, |_| Ok::<_, ()>(())).is_none(),
            "192 + 40 > 200"
        );
        drop(arena);
        assert_eq!(a[99], 7, "regions keep the mapping alive");
    }

    #[test]
    fn a_failed_write_returns_its_error() {
        let arena = Arena::new(64).unwrap();
        assert_eq!(arena.fill(8, |_| Err("disk")).unwrap().err(), Some("disk"));
    }
}
