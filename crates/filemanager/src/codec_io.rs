//! Drives the at-rest codec (`filemanager-codec`) from async streams. (Being wired.)

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::meta::Encoding;
use crate::store::{ByteStream, ObjectInfo, Store};

/// Which encryption keys a manager uses.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum KeyConfig {
    /// No key: uploads that ask for encryption fail.
    #[default]
    None,
}

impl KeyConfig {
    /// Reads `STORAGE_ENCRYPTION_KEY`.
    pub fn from_env() -> Result<Self> {
        Ok(KeyConfig::None)
    }
}

#[derive(Debug)]
pub(crate) struct Codec {}

impl Codec {
    pub(crate) fn new(_keys: KeyConfig) -> Result<Self> {
        Ok(Codec {})
    }

    pub(crate) fn check(&self, encoding: Encoding) -> Result<()> {
        match encoding {
            Encoding::Plain => Ok(()),
            _ => Err(Error::Unsupported {
                what: "encoding".into(),
            }),
        }
    }

    pub(crate) fn encode(
        &self,
        _key: &str,
        _encoding: Encoding,
        _size: Option<u64>,
        body: BoxStream<'static, Result<Bytes>>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(body)
    }

    pub(crate) fn decode(
        &self,
        _key: &str,
        _encoding: Encoding,
        _size: u64,
        body: ByteStream,
    ) -> Result<ByteStream> {
        Ok(body)
    }

    pub(crate) async fn size(&self, _store: &Store, _key: &str, info: &ObjectInfo) -> Result<u64> {
        Ok(info.stored_size)
    }

    pub(crate) async fn read_range(
        &self,
        store: &Store,
        key: &str,
        info: &ObjectInfo,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream> {
        store.get_range(key, info, range).await
    }
}
