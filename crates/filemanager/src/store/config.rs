//! Which backend to use and how to reach it, from code or from the seed's environment
//! variables.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use zeroize::Zeroizing;

use super::{Capabilities, Store};
use crate::error::{Error, Result};

/// Where files are stored.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StorageConfig {
    /// In process memory; gone when the process ends. For tests and experiments.
    Memory,
    /// A directory on local disk (the embedded default). Writes are atomic: a file appears
    /// under its final name only once complete.
    Local {
        /// The directory that holds the files.
        root: PathBuf,
    },
    /// An S3-compatible bucket: AWS S3, MinIO, Garage, Ceph, …
    S3(S3Config),
    /// Any other `object_store` implementation (a wrapper that counts or throttles requests,
    /// another backend). Its capabilities say whether it keeps attributes and lists in order.
    Custom {
        /// The store.
        store: Arc<dyn object_store::ObjectStore>,
        /// What it can do.
        capabilities: Capabilities,
    },
    /// A Google Cloud Storage bucket; credentials from the usual `GOOGLE_*` variables.
    #[cfg(feature = "gcp")]
    Gcs {
        /// The bucket name.
        bucket: String,
    },
    /// An Azure Blob Storage container; account and credentials from the usual `AZURE_*`
    /// variables.
    #[cfg(feature = "azure")]
    Azure {
        /// The container name.
        container: String,
    },
}

/// How to reach an S3-compatible bucket. `Debug` never shows the secret.
#[derive(Clone)]
pub struct S3Config {
    /// The bucket (`APP_BUCKET`).
    pub bucket: String,
    /// Endpoint URL for non-AWS servers, e.g. `http://localhost:9000` (`S3_URL`).
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`, default `us-east-1`).
    pub region: String,
    /// Access key id (`AWS_ACCESS_KEY_ID`). Without it, the AWS credential chain is used.
    pub access_key_id: Option<String>,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`), wiped from memory when dropped.
    pub secret_access_key: Option<Zeroizing<String>>,
    /// Longest wait for a connection to the endpoint (default 5 s).
    pub connect_timeout: Duration,
    /// Longest time one request may take, body included, before it fails and may be retried
    /// (default 120 s). Bounds how long a stalled backend can hold a caller.
    pub request_timeout: Duration,
    /// Longest time all retries of one operation may take together (default 30 s).
    pub retry_timeout: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("request_timeout", &self.request_timeout)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Config {
    /// A config for `bucket` with the defaults: AWS endpoint, `us-east-1`, credential chain.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            retry_timeout: Duration::from_secs(30),
        }
    }

    /// Reads the seed's variables: `APP_BUCKET` (required), `S3_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`. Returns `Ok(None)` if `APP_BUCKET` is unset.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Like [`S3Config::from_env`] with another source of variables (and for tests).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(bucket) = get("APP_BUCKET").filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        if !valid_bucket(&bucket) {
            return Err(Error::config(
                "APP_BUCKET",
                "must be 3-63 characters of a-z, 0-9, '.' and '-'",
            ));
        }
        let mut cfg = S3Config::new(bucket);
        if let Some(url) = get("S3_URL").filter(|u| !u.is_empty()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(Error::config(
                    "S3_URL",
                    "must be an http:// or https:// URL",
                ));
            }
            cfg.endpoint = Some(url);
        }
        if let Some(region) = get("AWS_REGION").filter(|r| !r.is_empty()) {
            cfg.region = region;
        }
        let id = get("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
        let secret = get("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty());
        match (id, secret) {
            (Some(id), Some(secret)) => {
                cfg.access_key_id = Some(id);
                cfg.secret_access_key = Some(Zeroizing::new(secret));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::config(
                    "AWS_SECRET_ACCESS_KEY",
                    "is required when AWS_ACCESS_KEY_ID is set",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "AWS_ACCESS_KEY_ID",
                    "is required when AWS_SECRET_ACCESS_KEY is set",
                ));
            }
        }
        Ok(Some(cfg))
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
}

impl StorageConfig {
    /// S3 when `APP_BUCKET` is set, else local disk under `{FM_DATA_DIR or ./data}/files`.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Like [`StorageConfig::from_env`] with another source of variables.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(s3) = S3Config::from_lookup(get)? {
            return Ok(StorageConfig::S3(s3));
        }
        let data = get("FM_DATA_DIR")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "./data".into());
        Ok(StorageConfig::Local {
            root: PathBuf::from(data).join("files"),
        })
    }

    /// Opens the backend.
    pub(crate) fn open(&self) -> Result<Store> {
        match self {
            StorageConfig::Memory => Ok(Store::new(
                Arc::new(InMemory::new()),
                Capabilities {
                    attributes: true,
                    sorted_listing: true,
                    signed_urls: false,
                },
                "memory",
            )),
            StorageConfig::Local { root } => {
                std::fs::create_dir_all(root).map_err(|e| {
                    Error::config(
                        "FM_DATA_DIR",
                        format!("cannot create the storage directory: {}", e.kind()),
                    )
                })?;
                let fs = Arc::new(
                    LocalFileSystem::new_with_prefix(root)
                        .map_err(|_| Error::config("FM_DATA_DIR", "not a usable directory"))?
                        .with_automatic_cleanup(true),
                );
                Ok(Store::new(
                    fs.clone(),
                    Capabilities {
                        attributes: false,
                        sorted_listing: false,
                        signed_urls: false,
                    },
                    "local",
                )
                .with_local_root(root.clone(), fs))
            }
            StorageConfig::S3(cfg) => open_s3(cfg),
            StorageConfig::Custom {
                store,
                capabilities,
            } => Ok(Store::new(store.clone(), *capabilities, "custom")),
            #[cfg(feature = "gcp")]
            StorageConfig::Gcs { bucket } => {
                crate::tls::install_crypto_provider();
                let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|_| Error::config("GOOGLE_*", "the GCS settings are not usable"))?;
                Ok(Store::new(Arc::new(gcs), CLOUD, "gcs"))
            }
            #[cfg(feature = "azure")]
            StorageConfig::Azure { container } => {
                crate::tls::install_crypto_provider();
                let az = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .build()
                    .map_err(|_| Error::config("AZURE_*", "the Azure settings are not usable"))?;
                Ok(Store::new(Arc::new(az), CLOUD, "azure"))
            }
        }
    }
}

/// What the cloud object stores can do.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
const CLOUD: Capabilities = Capabilities {
    attributes: true,
    sorted_listing: true,
    signed_urls: true,
};

/// Retries for transient failures (connection errors, timeouts, 5xx, 429) with exponential
/// backoff; object_store never retries other 4xx answers.
#[cfg(feature = "aws")]
fn retry_config(retry_timeout: Duration) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout,
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
    }
}

#[cfg(feature = "aws")]
fn open_s3(cfg: &S3Config) -> Result<Store> {
    let s3 = build_s3(cfg)?;
    Ok(Store::new(s3.clone(), CLOUD, "s3").with_signer(s3))
}

/// A plain object_store client for an S3 bucket (also used for the cache bucket).
#[cfg(feature = "aws")]
pub(crate) fn raw_s3(cfg: &S3Config) -> Result<Arc<dyn object_store::ObjectStore>> {
    Ok(build_s3(cfg)?)
}

#[cfg(feature = "aws")]
fn build_s3(cfg: &S3Config) -> Result<Arc<object_store::aws::AmazonS3>> {
    use object_store::aws::AmazonS3Builder;

    crate::tls::install_crypto_provider();
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&cfg.bucket)
        .with_region(&cfg.region)
        .with_retry(retry_config(cfg.retry_timeout))
        // SigV4 with `UNSIGNED-PAYLOAD`: the request (method, path, headers) is still signed,
        // but the client no longer computes a SHA-256 of every part body, which cost uploads a
        // large share of their throughput (and the server hashes the body again to check it).
        // Integrity of the bytes does not rest on that hash: TLS protects them on the wire, and
        // encrypted files carry an AES-GCM tag per chunk that the codec checks on every read.
        // (Over a plain `http://` endpoint a plaintext file's body is now unprotected in
        // transit, as its downloads always were.) S3, Garage and MinIO accept it. Presigned
        // URLs (`with_signer` below) are unaffected: object_store always signs those as
        // `UNSIGNED-PAYLOAD`, since it never sees their body.
        .with_unsigned_payload(true)
        // FileManager deletes one key at a time. object_store sends even one key as a bulk
        // `DeleteObjects` POST, whose per-key failures come back inside a 200 and are never
        // retried; a cluster that lost a node answers exactly that way for a moment. A plain
        // `DELETE /key` gets the same retries as every other request.
        .with_disable_bulk_delete(true)
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(cfg.connect_timeout)
                .with_timeout(cfg.request_timeout),
        );
    if let Some(endpoint) = &cfg.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    // A plain-http endpoint is most likely Garage or MinIO talked to directly; Garage's
    // answers on kept-alive connections stall for 40 ms without this client (see its docs).
    #[cfg(target_os = "linux")]
    if super::quickack::applies(cfg.endpoint.as_deref(), |v| std::env::var(v).ok()) {
        b = b.with_http_connector(super::quickack::QuickAckConnector {
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
        });
    }
    if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b
            .with_access_key_id(id)
            .with_secret_access_key(secret.as_str());
    }
    let s3 = b
        .build()
        .map_err(|_| Error::config("APP_BUCKET", "the S3 settings are not usable"))?;
    Ok(Arc::new(s3))
}

#[cfg(not(feature = "aws"))]
fn open_s3(cfg: &S3Config) -> Result<Store> {
    Err(raw_s3(cfg).err().unwrap_or(Error::Unsupported {
        what: "S3 storage".into(),
    }))
}

#[cfg(not(feature = "aws"))]
pub(crate) fn raw_s3(_: &S3Config) -> Result<Arc<dyn object_store::ObjectStore>> {
    Err(Error::Unsupported {
        what: "S3 storage: this build lacks the `aws` feature".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_bucket_means_local_disk() {
        let cfg = StorageConfig::from_lookup(&lookup(&[("FM_DATA_DIR", "/srv/fm")])).unwrap();
        assert!(
            matches!(cfg, StorageConfig::Local { root } if root == std::path::Path::new("/srv/fm/files"))
        );
    }

    #[test]
    fn seed_variables_configure_s3() {
        let cfg = StorageConfig::from_lookup(&lookup(&[
            ("APP_BUCKET", "fastapp-dev-assets"),
            ("S3_URL", "http://localhost:9000"),
            ("AWS_ACCESS_KEY_ID", "minioadmin"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
        ]))
        .unwrap();
        let StorageConfig::S3(s3) = cfg else {
            panic!("expected S3")
        };
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://localhost:9000"));
        let shown = format!("{s3:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }

    #[test]
    fn config_errors_name_the_variable_not_the_value() {
        let err = StorageConfig::from_lookup(&lookup(&[
            ("APP_BUCKET", "b-1"),
            ("S3_URL", "localhost:9000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("S3_URL"), "{err}");
        let err = StorageConfig::from_lookup(&lookup(&[
            ("APP_BUCKET", "bucket"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2-secret"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(StorageConfig::from_lookup(&lookup(&[("APP_BUCKET", "Bad_Bucket")])).is_err());
    }
}
