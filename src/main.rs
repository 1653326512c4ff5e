//! The `regmail` binary: see `regmail --help` and README.md.

fn main() {
    std::process::exit(regmail::cli::main());
}
