//! `corral run`'s primary keeps its heap at its working size.
//!
//! A primary under a restart storm frees what every worker's start allocated (its channels,
//! tasks, output lines) while new workers start. glibc's malloc keeps such freed memory for
//! reuse, spread over one arena per thread that ever allocated (the blocking pool's threads
//! come and go), and gives back only the top of each heap: measured (RELIABILITY.md, Storms),
//! the primary's `RssAnon` crept up by several hundred KiB per thousand killed workers while
//! the memory in use did not grow (heaptrack: the same live set after 3,000 and 4,000 kills).
//! So the primary uses one arena, and hands the free pages inside it back to the kernel now
//! and then (`malloc_trim`), which costs a walk of the free lists of a heap of a few MiB.

use std::time::Duration;

/// How often the free pages go back to the kernel.
pub(crate) const TRIM_EVERY: Duration = Duration::from_secs(5);

/// One malloc arena for the whole process; called first thing, before the primary's threads.
pub(crate) fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; M_ARENA_MAX takes any
    // positive count and affects arenas created from now on.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands the heap's free pages back to the kernel every [`TRIM_EVERY`], until dropped.
pub(crate) async fn trim_forever() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        trim();
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks; it only releases free memory
    // (`madvise(MADV_DONTNEED)` on whole free pages) and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
