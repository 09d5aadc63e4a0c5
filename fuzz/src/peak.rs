//! A global allocator that records the peak of live heap bytes, so that each fuzz input can be
//! held to an allocation budget: no input may make the decoders allocate beyond the frame
//! limit in force (plus a bounded allowance, [`within_budget`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counters are only bookkeeping and never affect the pointers returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What serde may allocate beyond the input: a sequence whose length prefix lies is
/// preallocated up to 1 MiB (serde's `size_hint::cautious`), once per nesting level that the
/// harness's message types have, plus room for the decoded values themselves.
pub const SERDE_ALLOWANCE: usize = 4 << 20;

/// Runs `target` on `data` and checks the peak of heap bytes it had live at once:
/// at most twice the frame limit it reports (its buffer may double once while a frame
/// arrives), plus twice the input (copies of it), plus [`SERDE_ALLOWANCE`].
///
/// # Panics
///
/// When the budget is exceeded: an oversized allocation, a finding.
pub fn within_budget(data: &[u8], target: fn(&[u8]) -> usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let limit = target(data);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let budget = 2 * (limit + 4) + 2 * data.len() + SERDE_ALLOWANCE;
    assert!(peak <= budget, "{peak} bytes live at once, over the budget of {budget} (frame limit {limit})");
}
