//! The seed's global instance and its convenience functions.
//!
//! The global manager is built from the environment on first use ([`FileManager::from_env`]),
//! unless the application installed its own with [`set_global`] first.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::body::Body;
use crate::error::Result;
use crate::location::StorageLevel;
use crate::manager::FileManager;
use crate::types::*;

static GLOBAL: OnceLock<FileManager> = OnceLock::new();

/// The process-wide manager (the seed's `file_manager`), built from the environment the first
/// time it is asked for. A configuration error is returned, not cached: fix the environment and
/// ask again.
pub fn file_manager() -> Result<&'static FileManager> {
    if let Some(fm) = GLOBAL.get() {
        return Ok(fm);
    }
    let built = FileManager::from_env()?;
    // If another thread won the race, its manager is the global one and ours is dropped.
    Ok(GLOBAL.get_or_init(|| built))
}

/// Installs `fm` as the global manager. Returns it back if one was already installed.
pub fn set_global(fm: FileManager) -> std::result::Result<(), FileManager> {
    GLOBAL.set(fm)
}

/// The seed's `upload_file_with_cache`: an upload through the global manager that keeps the
/// content in the cache.
pub async fn upload_file_with_cache(
    domain: &str,
    level: StorageLevel,
    filename: &str,
    file_data: impl Into<Body>,
    opts: UploadOptions,
) -> Result<UploadResult> {
    let opts = UploadOptions {
        cache_content: true,
        ..opts
    };
    file_manager()?
        .upload_file(domain, level, filename, file_data, opts)
        .await
}

/// The seed's `download_file_with_cache`: a download through the global manager that may be
/// answered from the cache.
pub async fn download_file_with_cache(
    domain: &str,
    level: StorageLevel,
    filename: &str,
    opts: DownloadOptions,
) -> Result<Bytes> {
    let opts = DownloadOptions {
        bypass_cache: false,
        ..opts
    };
    file_manager()?
        .download_file(domain, level, filename, opts)
        .await
}
