//! Memory hygiene: freed heap goes back to the operating system after a burst.
//!
//! The `switchyard` binary allocates with jemalloc (src/main.rs), whose background thread does
//! this for it; glibc then holds next to nothing and this check never trims. It stays for the
//! library on the system allocator (tests, embedding). The glibc story, measured before
//! jemalloc (issue 12):
//!
//! glibc's allocator keeps what a burst freed in its arenas. Measured (`bench/burst_memory.py`,
//! 2,000 concurrent streams): 11 MB warm, 79 MB still resident 30 s after the burst;
//! `malloc_trim(0)` brought it to 41 MB (the rest is live: idle pooled upstream connections,
//! closed after their idle timeout). mimalloc through its crate kept more (143 MB), and glibc's
//! tunables (`MALLOC_ARENA_MAX=2`, a lower `trim_threshold`) kept the same; BENCHMARKS.md has
//! the table. So a background task looks every few seconds at how much freed memory glibc
//! holds (`mallinfo2().fordblks`) and, past a threshold, trims on a blocking thread. Requests
//! never wait for it. Elsewhere than Linux with glibc this is a no-op.

use std::time::Duration;

/// How often the held free memory is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Freed-but-held heap worth giving back.
pub const TRIM_ABOVE: usize = 16 << 20;

/// Runs forever: checks every [`CHECK_EVERY`], trims when more than [`TRIM_ABOVE`] is held.
pub async fn release_freed_memory() {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if should_trim(held_free_bytes()) {
            // malloc_trim walks and locks the arenas: off the async workers.
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            tracing::debug!(released, "returned freed heap to the operating system");
        }
    }
}

/// Whether `held` freed bytes (None: unknown on this platform) are worth a trim.
fn should_trim(held: Option<usize>) -> bool {
    held.is_some_and(|h| h > TRIM_ABOVE)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn held_free_bytes() -> Option<usize> {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    Some(info.fordblks)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim is thread-safe; 0 keeps no extra padding at the top of the heap.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn held_free_bytes() -> Option<usize> {
    None
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_past_the_threshold_and_only_when_known() {
        assert!(!should_trim(None));
        assert!(!should_trim(Some(0)));
        assert!(!should_trim(Some(TRIM_ABOVE)));
        assert!(should_trim(Some(TRIM_ABOVE + 1)));
    }

    /// On glibc, memory freed by many small allocations is held until trimmed, and the trim
    /// gives it back (what the background task relies on).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_holds_freed_memory_until_trimmed() {
        let before = held_free_bytes().unwrap();
        // Interleave kept and freed blocks so the freed ones cannot simply shrink the heap top.
        let mut keep = Vec::new();
        let mut free = Vec::new();
        for i in 0..40_000 {
            let block = vec![i as u8; 1024];
            if i % 8 == 0 {
                keep.push(block);
            } else {
                free.push(block);
            }
        }
        drop(free);
        let held = held_free_bytes().unwrap();
        assert!(held >= before + (16 << 20), "held {held} before {before}");
        trim();
        // The counters are the whole process's, and other tests free memory concurrently: a
        // trim that did not give back what it could is seen on every try, a neighbour's free
        // landing between two readings only on one.
        let mut shrank = held_free_bytes().unwrap() <= held;
        for _ in 0..4 {
            if shrank {
                break;
            }
            let before_trim = held_free_bytes().unwrap();
            trim();
            shrank = held_free_bytes().unwrap() <= before_trim;
        }
        assert!(shrank, "trim never grows what is held");
        drop(keep);
    }
}
