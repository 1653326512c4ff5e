//! The daemon's memory use under load (issue 13: RSS under 200 MB at a million domains).
//!
//! glibc's malloc gives each thread that allocates its own arena (up to eight per core), and
//! memory freed in an arena stays mapped. The daemon's store work runs on tokio's blocking
//! pool, whose threads come and go, so a burst (an import of a large portfolio, thousands of
//! renewals) leaves many arenas each holding the peak of what one thread once used. Two arenas
//! serve two cores as well as sixteen; and after a large piece of work the freed memory is
//! handed back to the kernel (`malloc_trim(3)`).

/// Arenas malloc may create (mallopt(3) `M_ARENA_MAX`).
const ARENAS: i32 = 2;

/// Limits malloc to [`ARENAS`] arenas. Call once at start, before threads are spawned.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns the free memory at the top of malloc's arenas to the kernel (after a large piece
/// of work whose memory is freed again, such as one part of a portfolio import).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}
