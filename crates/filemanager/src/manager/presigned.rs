//! Presigned URLs: signed here, honoured by the service (`crate::presign`), or signed by the
//! S3 backend itself for plain files.

use chrono::Utc;

use super::{FileManager, now};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::meta::Encoding;
use crate::presign::{PresignUpload, PresignedGrant, Presigner};
use crate::types::PresignedUrl;

impl FileManager {
    /// A presigned upload URL for `location`.
    pub fn presign_upload(&self, location: &Location, req: &PresignUpload) -> Result<PresignedUrl> {
        if req.encrypt || req.compress {
            self.inner
                .codec
                .check(Encoding::from_flags(req.compress, req.encrypt))?;
        }
        self.presigner()?.upload(location, req, Utc::now())
    }

    /// A presigned download URL for `location`, valid for `expires_in` seconds.
    pub fn presign_download(&self, location: &Location, expires_in: u64) -> Result<PresignedUrl> {
        self.presigner()?.download(location, expires_in, Utc::now())
    }

    /// A URL straight to the S3 bucket (SigV4, signed by object_store) for a **plain** file
    /// (`encrypt = false, compress = false`), valid for `expires_in` seconds: downloads then
    /// never touch the service. Encrypted or compressed files can only be served by the
    /// service ([`FileManager::presign_download`]); asking for them here, or on a backend that
    /// cannot sign URLs, is `InvalidInput`. The URL serves whatever bytes are
    /// stored under the key when it is used.
    pub async fn presign_direct_download(
        &self,
        location: &Location,
        expires_in: u64,
    ) -> Result<PresignedUrl> {
        crate::presign::check_expiry(expires_in)?;
        let key = location.key();
        let info = self.inner.store.head(&key).await?;
        if info.record.encoding != Encoding::Plain {
            return Err(Error::invalid_input(
                "direct",
                "the file is encrypted or compressed; only the service can serve it",
            ));
        }
        let signed = self
            .inner
            .store
            .signed_get_url(&key, std::time::Duration::from_secs(expires_in))
            .await
            .ok_or_else(|| Error::invalid_input("direct", "direct URLs need an S3 backend"))??;
        let issued = now();
        Ok(PresignedUrl {
            success: true,
            url: signed,
            method: "GET".into(),
            headers: Default::default(),
            expires_at: issued + chrono::Duration::seconds(expires_in as i64),
            expires_in,
        })
    }

    /// Checks a request that may carry a presigned URL. `raw_path` is the request path as
    /// received (`/v1/files/…`, still percent-encoded) and `raw_query` its query string.
    /// `Ok(None)`: no signature, so not a presigned request; `Err(Forbidden)`: a signature that
    /// does not allow this request.
    pub fn verify_presigned(
        &self,
        method: &str,
        raw_path: &str,
        raw_query: &str,
    ) -> Result<Option<PresignedGrant>> {
        match &self.inner.presigner {
            Some(p) => p.verify(method, raw_path, raw_query, Utc::now()),
            None if raw_query.split('&').any(|kv| kv.starts_with("sig=")) => {
                Err(Error::Forbidden {
                    reason: "presigned URLs are not enabled".into(),
                })
            }
            None => Ok(None),
        }
    }

    pub(super) fn presigner(&self) -> Result<&Presigner> {
        self.inner
            .presigner
            .as_ref()
            .ok_or_else(|| Error::Unsupported {
                what:
                    "presigned URLs need a base URL and a secret (FM_PUBLIC_URL, FM_PRESIGN_SECRET)"
                        .into(),
            })
    }
}
