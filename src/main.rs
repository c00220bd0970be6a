// On glibc Linux the process starts at a C `main` of its own (below): see `start`.
#![cfg_attr(all(target_os = "linux", target_env = "gnu", not(test)), no_main)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

// Folding and batch appends allocate many small JSON values, and a batch frees on one thread
// what another allocated: mimalloc does both markedly faster than the system allocator. But
// starting it costs a process about a third of a millisecond (its options, its arena, and a
// fresh page for every size class it hands out), as much as a single `append` spends on
// everything besides its fsync. So a process that serves one request (an `append` from a
// shell loop, a `get`) keeps the system allocator, and every other takes mimalloc.
#[global_allocator]
static ALLOCATOR: ChosenAllocator = ChosenAllocator;

/// Which allocator serves this process: chosen from the command line before its first
/// allocation, and fixed from then on, since memory goes back to the allocator that gave it.
static CHOICE: AtomicU8 = AtomicU8::new(if CHOSEN_AT_START { UNDECIDED } else { MIMALLOC });
const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

/// Whether the choice is made from the command line: glibc passes `argc` and `argv` to the
/// functions of `.init_array`, which run before `main` and before any Rust allocation (the
/// standard library reads its own arguments the same way). Elsewhere mimalloc serves all.
const CHOSEN_AT_START: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[unsafe(link_section = ".init_array")]
static CHOOSE_ALLOCATOR: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = choose_allocator;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn choose_allocator(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _env: *const *const libc::c_char,
) {
    let args = (1..usize::try_from(argc).unwrap_or(0)).map(|i| {
        // SAFETY: glibc hands `.init_array` functions the process's own argc and argv.
        unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) }.to_bytes()
    });
    let choice = if serves_one_request(args) {
        SYSTEM
    } else {
        MIMALLOC
    };
    // Only if nothing was allocated yet; then the system allocator stays.
    let chosen = CHOICE.compare_exchange(UNDECIDED, choice, Ordering::Relaxed, Ordering::Relaxed);
    if chosen == Ok(UNDECIDED) && choice == MIMALLOC {
        // SAFETY: mimalloc's own load-time initialisation, run at load time as it expects,
        // before its first allocation. Built without its constructor (.cargo/config.toml),
        // it is started here only when it will serve; where the constructor stays, a
        // second start finds everything done.
        unsafe { _mi_auto_process_init() };
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// What mimalloc's constructor calls (`src/init.c`): it reads the options, sets up the
    /// main heap and marks mimalloc ready to reserve arenas.
    fn _mi_auto_process_init();
}

/// Whether a command line (without the program name) asks for one request's work: `init`,
/// `append` without `--batch`, `get`, `at`, `schema`, or only help or the version. A wrong
/// guess only costs time.
fn serves_one_request<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut command: Option<&[u8]> = None;
    let mut batch = false;
    while let Some(arg) = args.next() {
        match command {
            None if arg == b"-C" || arg == b"--folder" => {
                args.next();
            }
            None if arg.starts_with(b"-") => {}
            None => command = Some(arg),
            Some(_) => batch |= arg == b"--batch",
        }
    }
    match command {
        None => true,
        Some(b"append") => !batch,
        Some(command) => matches!(command, b"init" | b"get" | b"at" | b"schema"),
    }
}

struct ChosenAllocator;

impl ChosenAllocator {
    #[inline]
    fn mimalloc() -> bool {
        match CHOICE.load(Ordering::Relaxed) {
            MIMALLOC => true,
            SYSTEM => false,
            // An allocation before the choice: the system allocator, for good.
            _ => {
                CHOICE.compare_exchange(UNDECIDED, SYSTEM, Ordering::Relaxed, Ordering::Relaxed)
                    == Err(MIMALLOC)
            }
        }
    }
}

// SAFETY: every call goes to one allocator, the same for the whole process (see `CHOICE`),
// which upholds `GlobalAlloc`'s contract itself.
unsafe impl GlobalAlloc for ChosenAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::mimalloc() {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::mimalloc() {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::mimalloc() {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::mimalloc() {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e` index; libmimalloc-sys names no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Runs the command line; returns the exit code.
fn run() -> u8 {
    // mimalloc hands freed memory back to the kernel 10 ms after it is free, and a long batch
    // or fold, which frees and reallocates a group's worth every few milliseconds, then faults
    // it all in again (a fifth of a 1M-event batch's time). Freed memory is kept for reuse
    // instead; the peak is what it was.
    // SAFETY: setting an option only stores its value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    eventdir::cli::main().code()
}

/// The process's entry on glibc Linux, in place of the standard library's start-up. That
/// start-up reads `/proc/self/maps` to find the main thread's stack and maps an alternate
/// signal stack with a guard page (unmapped again at exit), so that a stack overflow prints
/// a message instead of only dying of SIGSEGV: about 50 µs a process, a tenth of what an
/// `append` from a shell loop costs beyond its fsync. What else it does is done here: standard
/// descriptors that are closed are opened on /dev/null (or the first file opened would take
/// their number and receive what is printed), SIGPIPE is ignored (so that a closed pipe is an
/// error to handle, not death), and a panic exits with 101. The arguments need nothing:
/// glibc hands them to the standard library's `.init_array` function, as to ours above.
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
mod start {
    #[unsafe(no_mangle)]
    extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
        open_closed_standard_fds();
        // SAFETY: setting a signal's disposition to ignore touches no memory of ours.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let code = std::panic::catch_unwind(super::run).unwrap_or(101);
        // Flushes stdout, as returning from the standard library's `main` would.
        std::process::exit(code.into())
    }

    /// Opens /dev/null on each of descriptors 0, 1 and 2 that is closed.
    fn open_closed_standard_fds() {
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        // SAFETY: poll writes only into the three entries it is given.
        while unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } == -1 {
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                // Ask each descriptor instead.
                for entry in &mut fds {
                    // SAFETY: F_GETFD only reads the descriptor's flags.
                    let closed = unsafe { libc::fcntl(entry.fd, libc::F_GETFD) } == -1;
                    entry.revents = if closed { libc::POLLNVAL } else { 0 };
                }
                break;
            }
        }
        for entry in fds.iter().filter(|e| e.revents & libc::POLLNVAL != 0) {
            // SAFETY: a NUL-terminated path; the lowest free descriptor is the closed one.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != entry.fd {
                std::process::abort();
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(test))))]
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run())
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

    fn one_request(line: &str) -> bool {
        serves_one_request(line.split_whitespace().map(str::as_bytes))
    }

    #[test]
    fn single_requests_keep_the_system_allocator_and_bulk_work_takes_mimalloc() {
        for line in [
            "",
            "--version",
            "--help",
            "init shop",
            "append order:1 --set status=paid",
            "-C shop append order:1 --data {}",
            "--folder shop get order:1",
            "at order:1 --seq 3",
            "schema show order",
        ] {
            assert!(one_request(line), "{line:?}");
        }
        for line in [
            "append --batch",
            "-C shop append --batch",
            "-C append replay order:1",
            "verify",
            "clone a b",
            "export",
            "ls",
            "log order:1",
            "migrate order",
            "apply",
            "tail",
        ] {
            assert!(!one_request(line), "{line:?}");
        }
    }
}
