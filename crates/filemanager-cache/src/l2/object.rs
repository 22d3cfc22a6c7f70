//! [`ObjectStoreL2`]: L2 entries as objects in a bucket (the seed's S3 cache
//! bucket), through any `object_store` backend the caller configured.
//!
//! The bucket is shared by all instances, so an instance's `invalidate`
//! deletes the entry for everyone. Expiry is enforced on read from the entry
//! header; this store does not bound the bucket's size: configure a
//! lifecycle rule (e.g. expire objects under the prefix after a day, longer
//! than the largest TTL).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::l2::{L2Error, L2Store};

/// L2 entries stored as `{prefix}/{entry name}` objects.
#[derive(Clone, Debug)]
pub struct ObjectStoreL2 {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectStoreL2 {
    /// Uses `store` with objects under `prefix` (e.g. `"cache/l2"`; may be
    /// empty). [`clear`](L2Store::clear) only deletes objects directly under
    /// the prefix whose names look like entry names.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
        }
    }

    fn path(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl L2Store for ObjectStoreL2 {
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, L2Error>> {
        Box::pin(async move {
            match self.store.get(&self.path(name)).await {
                Ok(r) => r.bytes().await.map(Some).map_err(L2Error::new),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(L2Error::new(e)),
            }
        })
    }

    fn put<'a>(&'a self, name: &'a str, entry: Bytes) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            self.store
                .put(&self.path(name), PutPayload::from(entry))
                .await
                .map(|_| ())
                .map_err(L2Error::new)
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            match self.store.delete(&self.path(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(L2Error::new(e)),
            }
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), L2Error>> {
        Box::pin(async move {
            let depth = self.prefix.parts_count() + 1;
            let locations = self
                .store
                .list(Some(&self.prefix))
                .filter_map(move |meta| {
                    let keep = match &meta {
                        // Entries only: never other data sharing the prefix.
                        Ok(m) => {
                            m.location.parts_count() == depth
                                && m.location.filename().is_some_and(is_entry_name)
                        }
                        Err(_) => true,
                    };
                    std::future::ready(keep.then(|| meta.map(|m| m.location)))
                })
                .boxed();
            let mut deleted = self.store.delete_stream(locations);
            while let Some(r) = deleted.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(L2Error::new(e)),
                }
            }
            Ok(())
        })
    }

    fn is_shared(&self) -> bool {
        true
    }
}
