//! # FileManager
//!
//! One fast, safe way for multi-domain web applications (blog, commerce, lms, social, …) to
//! store files: upload, download, delete, describe and list, at two storage levels —
//!
//! - **APP** (`{domain}/app/{filename}`): shared by all users of a domain;
//! - **USER** (`{domain}/user/{user_id}/{filename}`): private to one user —
//!
//! on local disk (the default), in memory, or in any S3-compatible bucket, with optional
//! compression and encryption on by default.
//!
//! ```no_run
//! use filemanager::{FileManager, StorageLevel, UploadOptions, DownloadOptions};
//!
//! # async fn demo() -> filemanager::Result<()> {
//! let fm = FileManager::from_env()?;
//! let image_bytes = vec![0u8; 1024];
//! let result = fm
//!     .upload_file(
//!         "blog",
//!         StorageLevel::App,
//!         "posts/123/image.jpg",
//!         image_bytes,
//!         UploadOptions::default().content_type("image/jpeg"),
//!     )
//!     .await?;
//! assert_eq!(result.file.key, "blog/app/posts/123/image.jpg");
//! let data = fm
//!     .download_file("blog", StorageLevel::App, "posts/123/image.jpg", DownloadOptions::default())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Layers, top to bottom: [`FileManager`] (orchestration) → [`location`] (the only code that
//! makes storage keys) → the codec (`filemanager-codec`) → the store (an adapter over
//! `object_store`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod cache_io;
mod codec_io;
mod error;
mod global;
mod large;
pub mod location;
mod manager;
pub mod meta;
mod presign;
mod scoped;
mod store;
mod tls;
mod types;

pub use body::{Body, collect_body};
pub use cache_io::{CacheSetup, CacheTier2};
pub use codec_io::KeyConfig;
pub use error::{Error, Result};
/// The hybrid cache: configuration, statistics and tiers.
pub use filemanager_cache as cache;
/// The at-rest format: key ring and codec types, for callers that manage keys themselves.
pub use filemanager_codec as codec;
pub use global::{download_file_with_cache, file_manager, set_global, upload_file_with_cache};
pub use large::{LargeFileSetup, LargeFileStats};
pub use location::{Domain, Filename, Location, Scope, StorageLevel, UserId};
pub use manager::{FileManager, FileManagerBuilder, MAX_LIST_KEYS};
pub use presign::{FILES_ROUTE, PresignConfig, PresignMethod, PresignUpload, PresignedGrant};
pub use scoped::Scoped;
pub use store::{Capabilities, S3Config, StorageConfig};
pub use types::*;
