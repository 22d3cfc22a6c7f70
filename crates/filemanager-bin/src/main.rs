//! `filemanager`: the HTTP service (`filemanager serve`) and the operator CLI.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    filemanager_bin::cli::main()
}
