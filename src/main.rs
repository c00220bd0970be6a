// Folding and batch appends allocate many small JSON values, and a batch frees on one thread
// what another allocated: mimalloc does both markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e` index; libmimalloc-sys names no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // mimalloc hands freed memory back to the kernel 10 ms after it is free, and a long batch
    // or fold, which frees and reallocates a group's worth every few milliseconds, then faults
    // it all in again (a fifth of a 1M-event batch's time). Freed memory is kept for reuse
    // instead; the peak is what it was.
    // SAFETY: setting an option only stores its value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    eventdir::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // Its documented default is 10 (ms); the neighbouring options' are 1 and 0.
        // SAFETY: reading an option has no other effect.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 10);
    }
}
