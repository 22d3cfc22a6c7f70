//! What both library benches compare: a FileManager on local disk (no codec, no cache) and a
//! raw `object_store` on the same disk.

use std::path::Path;
use std::sync::Arc;

use filemanager::{DownloadOptions, FileManager, StorageConfig, UploadOptions};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

/// The two sides and the options that make FileManager do no more than storage.
pub struct Sides {
    pub fm: FileManager,
    pub raw: Arc<dyn ObjectStore>,
    /// Uploads without encryption and without filling a cache.
    pub plain: UploadOptions,
    /// Downloads that go around any cache.
    pub no_cache: DownloadOptions,
}

/// Both sides in directories below `dir`.
pub fn sides(dir: &Path) -> Sides {
    let fm = FileManager::builder(StorageConfig::Local {
        root: dir.join("fm"),
    })
    .build()
    .unwrap();
    std::fs::create_dir_all(dir.join("raw")).unwrap();
    let raw: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("raw")).unwrap());
    Sides {
        fm,
        raw,
        plain: UploadOptions::default().encrypt(false).cache_content(false),
        no_cache: DownloadOptions {
            bypass_cache: true,
            ..Default::default()
        },
    }
}
