// Folding and batch appends allocate many small JSON values, and a batch frees on one thread
// what another allocated: mimalloc does both markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventdir::cli::main()
}
