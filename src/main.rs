//! The `regmail` binary: see `regmail --help` and README.md.

/// mimalloc instead of glibc's malloc (ARCHITECTURE.md, "The allocator"): sled allocates and
/// frees a node copy for every page it reads or rewrites, on whichever thread touches it (its
/// epoch collector frees on the thread that pins next), and glibc's arenas made that a third
/// of the lifecycle pass (arena locks, `malloc_consolidate`). Built with `no_thp`: transparent
/// huge pages doubled the daemon's RSS at start for no speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(regmail::cli::main());
}
