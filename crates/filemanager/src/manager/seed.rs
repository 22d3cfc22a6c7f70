//! The seed's signatures: `(domain, level, filename, …)` arguments, with `user_id` among the
//! options, as the Python FileManager has them. Each validates into a `Location` or `Scope` and
//! calls the operation of the same meaning.

use bytes::Bytes;

use super::FileManager;
use crate::body::Body;
use crate::error::Result;
use crate::location::{Location, Scope, StorageLevel};
use crate::presign::PresignUpload;
use crate::types::*;

impl FileManager {
    /// The seed's `upload_file`: `opts.user_id` is required for USER level.
    pub async fn upload_file(
        &self,
        domain: &str,
        level: StorageLevel,
        filename: &str,
        file_data: impl Into<Body>,
        opts: UploadOptions,
    ) -> Result<UploadResult> {
        let loc = Location::new(domain, level, opts.user_id.as_deref(), filename)?;
        self.upload(&loc, file_data, &opts).await
    }

    /// The seed's `download_file`: the file's original bytes.
    pub async fn download_file(
        &self,
        domain: &str,
        level: StorageLevel,
        filename: &str,
        opts: DownloadOptions,
    ) -> Result<Bytes> {
        let loc = Location::new(domain, level, opts.user_id.as_deref(), filename)?;
        self.download_bytes(&loc, &opts).await
    }

    /// The seed's `delete_file`.
    pub async fn delete_file(
        &self,
        domain: &str,
        level: StorageLevel,
        filename: &str,
        user_id: Option<&str>,
    ) -> Result<DeleteResult> {
        let loc = Location::new(domain, level, user_id, filename)?;
        self.delete(&loc).await
    }

    /// The seed's `get_file_metadata`: `None` when there is no such file.
    pub async fn get_file_metadata(
        &self,
        domain: &str,
        level: StorageLevel,
        filename: &str,
        user_id: Option<&str>,
        use_cache: bool,
    ) -> Result<Option<FileInfo>> {
        let loc = Location::new(domain, level, user_id, filename)?;
        self.metadata(&loc, use_cache).await
    }

    /// The seed's `list_files`.
    pub async fn list_files(
        &self,
        domain: &str,
        level: StorageLevel,
        opts: ListOptions,
    ) -> Result<ListResult> {
        let scope = Scope::parse(domain, level, opts.user_id.as_deref())?;
        self.list(&scope, &opts).await
    }

    /// The seed's `generate_upload_url`: a URL that lets its holder upload one file, of this
    /// content type, until it expires, with no other credential. Stored encrypted (the seed's
    /// default); see [`FileManager::presign_upload`] for the other switches.
    pub fn generate_upload_url(
        &self,
        domain: &str,
        level: StorageLevel,
        filename: &str,
        content_type: &str,
        opts: UrlOptions,
    ) -> Result<PresignedUrl> {
        let loc = Location::new(domain, level, opts.user_id.as_deref(), filename)?;
        let req = PresignUpload {
            content_type: content_type.to_owned(),
            expires_in: opts.expires_in,
            max_size: None,
            compress: false,
            encrypt: true,
        };
        self.presign_upload(&loc, &req)
    }

    /// The seed's `generate_download_url`: a URL that lets its holder read one file until it
    /// expires.
    pub fn generate_download_url(
        &self,
        domain: &str,
        level: StorageLevel,
        filename: &str,
        opts: UrlOptions,
    ) -> Result<PresignedUrl> {
        let loc = Location::new(domain, level, opts.user_id.as_deref(), filename)?;
        self.presign_download(&loc, opts.expires_in)
    }
}
