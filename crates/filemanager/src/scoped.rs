//! Domain- and user-scoped handles, so an application module names its domain once.
//!
//! The seed's `BlogFileManager` becomes `fm.domain("blog")?` for APP-level files and
//! `fm.domain("blog")?.user("42")?` for one user's files; see `examples/blog.rs`.

use bytes::Bytes;

use crate::body::Body;
use crate::error::Result;
use crate::location::{Filename, Location, Scope, StorageLevel, UserId};
use crate::manager::FileManager;
use crate::types::*;

/// A [`FileManager`] bound to one scope: a domain's APP level, or one user of a domain.
#[derive(Clone, Debug)]
pub struct Scoped {
    fm: FileManager,
    scope: Scope,
}

impl Scoped {
    pub(crate) fn new(fm: FileManager, scope: Scope) -> Self {
        Scoped { fm, scope }
    }

    /// The same domain's USER level for `user_id`.
    pub fn user(&self, user_id: &str) -> Result<Scoped> {
        let scope = Scope::new(
            self.scope.domain().clone(),
            StorageLevel::User,
            Some(UserId::new(user_id)?),
        )?;
        Ok(Scoped::new(self.fm.clone(), scope))
    }

    /// The scope this handle works in.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The location of `filename` in this scope.
    pub fn location(&self, filename: &str) -> Result<Location> {
        self.scope.location(Filename::new(filename)?)
    }

    /// Uploads a file; see [`FileManager::upload`].
    pub async fn upload(
        &self,
        filename: &str,
        data: impl Into<Body>,
        opts: &UploadOptions,
    ) -> Result<UploadResult> {
        self.fm.upload(&self.location(filename)?, data, opts).await
    }

    /// Downloads a whole file; see [`FileManager::download_bytes`].
    pub async fn download(&self, filename: &str) -> Result<Bytes> {
        self.fm
            .download_bytes(&self.location(filename)?, &DownloadOptions::default())
            .await
    }

    /// Starts a streaming or ranged download; see [`FileManager::download`].
    pub async fn download_with(&self, filename: &str, opts: &DownloadOptions) -> Result<Download> {
        self.fm.download(&self.location(filename)?, opts).await
    }

    /// Deletes a file; see [`FileManager::delete`].
    pub async fn delete(&self, filename: &str) -> Result<DeleteResult> {
        self.fm.delete(&self.location(filename)?).await
    }

    /// Describes a file; see [`FileManager::metadata`].
    pub async fn metadata(&self, filename: &str) -> Result<Option<FileInfo>> {
        self.fm.metadata(&self.location(filename)?, true).await
    }

    /// Lists files; see [`FileManager::list`].
    pub async fn list(&self, opts: &ListOptions) -> Result<ListResult> {
        self.fm.list(&self.scope, opts).await
    }
}
