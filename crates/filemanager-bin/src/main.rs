//! `filemanager`: the HTTP service (`filemanager serve`) and the operator CLI.
#![forbid(unsafe_code)]

// The service allocates a handful of small buffers per request (headers, request parts,
// futures); mimalloc's per-thread free lists make each of them a few instructions, where
// glibc's malloc spent about a fifth of the service's user-space time on a cached small-file
// GET (callgrind; see BENCHMARKS.md, pair 1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    filemanager_bin::cli::main()
}
