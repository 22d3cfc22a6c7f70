//! Key rotation: re-encrypting files sealed under old keys.

use futures::TryStreamExt;

use super::FileManager;
use crate::error::{Error, Result};
use crate::meta::ObjectRecord;
use crate::types::RekeyReport;

/// What happened to one object in a rekey pass.
enum RekeyOutcome {
    Done,
    Current,
    Changed,
}

impl FileManager {
    /// Re-encrypts, under the primary key, every encrypted file whose key starts with
    /// `key_prefix` (e.g. `""` for all, `"blog/"` for one domain) and that is sealed under an old
    /// key. Each file is decoded and re-encoded as a stream and written back atomically; a file
    /// that changed while it was being re-encrypted is left to its new writer (counted in
    /// `skipped_changed`). Failures of single files are reported, not fatal.
    pub async fn rekey(&self, key_prefix: &str) -> Result<RekeyReport> {
        let mut report = RekeyReport::default();
        let mut keys = self.inner.store.list(key_prefix, None).await?;
        while let Some(key) = keys.try_next().await? {
            report.scanned += 1;
            match self.rekey_one(&key).await {
                Ok(RekeyOutcome::Done) => report.rekeyed += 1,
                Ok(RekeyOutcome::Current) => {}
                Ok(RekeyOutcome::Changed) => report.skipped_changed += 1,
                Err(e) => report.failed.push((key, e.to_string())),
            }
        }
        Ok(report)
    }

    async fn rekey_one(&self, key: &str) -> Result<RekeyOutcome> {
        let store = &self.inner.store;
        let codec = &self.inner.codec;
        let info = match store.head(key).await {
            Ok(info) => info,
            Err(Error::FileNotFound { .. }) => return Ok(RekeyOutcome::Changed),
            Err(e) => return Err(e),
        };
        if !codec.needs_rekey(store, key, &info).await? {
            return Ok(RekeyOutcome::Current);
        }
        let (current, stored) = store.get(key).await?;
        if current.etag != info.etag {
            return Ok(RekeyOutcome::Changed);
        }
        let size = codec.size(store, key, &current).await?;
        let plain = codec.decode(key, current.record.encoding, stored)?;
        let record = ObjectRecord {
            size: Some(size),
            ..current.record.clone()
        };
        let encoded = codec.encode(key, record.encoding, Some(size), plain)?;
        // Last look before replacing: a writer that got in first keeps its version. The window
        // left is the time of one write; see docs/operations.md on rotating keys.
        if store.head(key).await.ok().and_then(|i| i.etag) != current.etag {
            return Ok(RekeyOutcome::Changed);
        }
        store.put(key, &record, encoded, false).await?;
        // Copies sealed under the old key are of no use now, and should not linger.
        self.forget_copies(key).await;
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(key).await;
        }
        Ok(RekeyOutcome::Done)
    }
}
