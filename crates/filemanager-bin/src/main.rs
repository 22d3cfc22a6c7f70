//! The `filemanager` binary: the HTTP service (`filemanager serve`) and the operator CLI.
//!
//! Both are thin layers over the `filemanager` library; they arrive with the service issue.
//! For now the binary checks its configuration and says what it would use.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    let fm = filemanager::FileManager::from_env()?;
    println!(
        "filemanager: configuration OK, storage backend: {}",
        fm.backend_name()
    );
    println!("the HTTP service and the CLI commands are not built yet");
    Ok(())
}
