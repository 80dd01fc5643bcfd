//! Giving memory back after a rebuild. A rebuild allocates a lot that it frees again (parsed
//! YAML, per-node template contexts, the previous snapshot); glibc keeps such pages in its
//! per-thread arenas unless asked, and a 100,000-node site's RSS would carry them for good.

/// Returns free heap pages to the operating system (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that the allocator holds as free; it takes no
    // pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
