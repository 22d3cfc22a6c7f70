//! Configuration shared by `serve` and the CLI commands: command-line flags over the contract's
//! environment variables, and the files `serve` keeps in the data directory.
//!
//! With nothing configured, the data directory (`./data`) holds everything a fresh machine
//! needs, each secret in its own file with mode 0600:
//!
//! | file | what | used when |
//! |---|---|---|
//! | `files/` | the stored files (local-disk backend) | `APP_BUCKET` is unset |
//! | `encryption.key` | 32 random bytes, hex | `STORAGE_ENCRYPTION_KEY` is unset |
//! | `api.key` | a service API key | `FM_API_KEYS` is unset (serve only) |
//! | `presign.key` | the presigned-URL signing secret | `FM_PRESIGN_SECRET` is unset |
//! | `key-check` | ids (not secrets) of the keys files were written with | always |
//!
//! `key-check` is what lets a restart with the wrong encryption key fail at once, with a clear
//! message, instead of failing on every download later.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use filemanager::{
    CacheSetup, CacheTier2, FileManager, KeyConfig, LargeFileSetup, PresignConfig, S3Config,
    StorageConfig,
};
use zeroize::Zeroizing;

/// Settings every command uses.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Address `serve` listens on; also the base of presigned URLs when --public-url is unset.
    #[arg(
        long,
        env = "FM_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: String,
    /// Directory for local files and generated keys.
    #[arg(long, env = "FM_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Public base URL of the service, used in presigned URLs (e.g. https://files.example.com).
    #[arg(long, env = "FM_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Largest upload in bytes; larger ones get 413 and nothing is stored.
    #[arg(long, env = "FM_MAX_UPLOAD_BYTES", global = true)]
    pub max_upload_bytes: Option<u64>,
    /// Secret (at least 32 bytes) signing presigned URLs; default: generated in the data dir.
    #[arg(long, env = "FM_PRESIGN_SECRET", hide_env_values = true, global = true)]
    pub presign_secret: Option<String>,
}

/// File names inside the data directory.
pub mod files {
    /// Stored files of the local-disk backend.
    pub const STORAGE: &str = "files";
    /// Generated encryption key.
    pub const ENCRYPTION_KEY: &str = "encryption.key";
    /// Generated service API key.
    pub const API_KEY: &str = "api.key";
    /// Generated presigned-URL secret.
    pub const PRESIGN_KEY: &str = "presign.key";
    /// Key ids files were written with.
    pub const KEY_CHECK: &str = "key-check";
}

/// A manager built from the configuration, and what was learnt doing it.
#[derive(Debug)]
pub struct Built {
    /// The manager.
    pub fm: FileManager,
    /// Things worth telling the operator (files created, where keys are).
    pub notes: Vec<String>,
}

/// The data directory and the secrets kept in it.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Opens (creating, mode 0700) the data directory.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            fs::create_dir_all(path)
                .with_context(|| format!("cannot create the data directory {}", path.display()))?;
            restrict(path, 0o700);
        }
        Ok(DataDir {
            path: path.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a file of the data directory lives.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads the secret in `name`, or creates it (mode 0600) with 32 random bytes in hex.
    /// Returns the secret and whether it was created.
    pub fn secret(&self, name: &str) -> anyhow::Result<(Zeroizing<String>, bool)> {
        let path = self.file(name);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let value = Zeroizing::new(text.trim().to_owned());
                if value.is_empty() {
                    bail!(
                        "{} is empty; delete it to have a new one made",
                        path.display()
                    );
                }
                Ok((value, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let value = Zeroizing::new(random_hex(32)?);
                write_private(&path, &format!("{}\n", value.as_str()))?;
                Ok((value, true))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The encryption keys: `STORAGE_ENCRYPTION_KEY` (and `_OLD`) when set, else the data
    /// directory's `encryption.key` (created on first use), with `STORAGE_ENCRYPTION_KEYS_OLD`
    /// as old keys.
    pub fn encryption_keys(&self, notes: &mut Vec<String>) -> anyhow::Result<KeyConfig> {
        let from_env = KeyConfig::from_env()?;
        if !from_env.key_ids().is_empty() {
            return Ok(from_env);
        }
        let (primary, created) = self.secret(files::ENCRYPTION_KEY)?;
        let path = self.file(files::ENCRYPTION_KEY);
        notes.push(if created {
            format!(
                "created a random encryption key in {} (mode 0600): back it up, files cannot be read without it",
                path.display()
            )
        } else {
            format!("encryption key: {}", path.display())
        });
        let old = std::env::var("STORAGE_ENCRYPTION_KEYS_OLD").unwrap_or_default();
        let old: Vec<&str> = old.split(',').filter(|k| !k.is_empty()).collect();
        Ok(KeyConfig::from_values(&primary, &old)?)
    }

    /// Refuses keys that cannot read what is stored: every key id in `key-check` must be among
    /// `keys`. Then records the primary id there.
    pub fn check_keys(&self, keys: &KeyConfig) -> anyhow::Result<()> {
        let ids = keys.key_ids();
        let Some(primary) = ids.first() else {
            return Ok(());
        };
        let path = self.file(files::KEY_CHECK);
        let mut recorded = self.recorded_key_ids()?;
        if let Some(missing) = recorded.iter().find(|id| !ids.contains(id)) {
            bail!(
                "the configured encryption key cannot read the files in {dir}: they were written with key id {missing}, \
                 which is neither the current key (STORAGE_ENCRYPTION_KEY or {dir}/{ek}) nor in STORAGE_ENCRYPTION_KEYS_OLD. \
                 Start with the key that wrote them; to change keys, keep the old one in STORAGE_ENCRYPTION_KEYS_OLD \
                 and run `filemanager rekey`",
                dir = self.path.display(),
                ek = files::ENCRYPTION_KEY,
            );
        }
        if !recorded.contains(primary) {
            recorded.push(primary.clone());
            self.write_key_ids(&recorded)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// After a complete re-encryption, only the primary key is needed any more.
    pub fn reset_key_ids(&self, keys: &KeyConfig) -> anyhow::Result<()> {
        match keys.key_ids().first() {
            Some(primary) => self.write_key_ids(std::slice::from_ref(primary)),
            None => Ok(()),
        }
    }

    fn recorded_key_ids(&self) -> anyhow::Result<Vec<String>> {
        let path = self.file(files::KEY_CHECK);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write_key_ids(&self, ids: &[String]) -> anyhow::Result<()> {
        let mut text = String::from(
            "# Ids (not secrets) of the encryption keys that files here were written with.\n\
             # filemanager refuses to start with keys that do not include all of them.\n",
        );
        for id in ids {
            text.push_str(id);
            text.push('\n');
        }
        let tmp = self.file(&format!("{}.tmp", files::KEY_CHECK));
        let _ = fs::remove_file(&tmp);
        write_private(&tmp, &text)?;
        fs::rename(&tmp, self.file(files::KEY_CHECK))?;
        Ok(())
    }
}

/// Storage: S3 when `APP_BUCKET` is set, else local disk under `{data_dir}/files`.
pub fn storage(data_dir: &DataDir) -> anyhow::Result<StorageConfig> {
    Ok(match S3Config::from_env()? {
        Some(s3) => StorageConfig::S3(s3),
        None => StorageConfig::Local {
            root: data_dir.file(files::STORAGE),
        },
    })
}

/// The base of presigned URLs: `--public-url`, else `http://{listen}` (a wildcard listen
/// address is replaced by loopback, which at least works on this machine).
pub fn base_url(common: &CommonArgs, listen: &str) -> String {
    match common.public_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let listen = listen
                .replace("0.0.0.0:", "127.0.0.1:")
                .replace("[::]:", "[::1]:");
            format!("http://{listen}")
        }
    }
}

/// The service's cache: the `CACHE_*` settings, with the disk tier in `{data_dir}/cache`
/// unless `CACHE_L2_DIR` or `S3_CACHE_BUCKET` says otherwise; `FM_CACHE=off` turns it off.
pub fn cache(data_dir: &DataDir) -> anyhow::Result<Option<CacheSetup>> {
    let Some(mut setup) = CacheSetup::from_env()? else {
        return Ok(None);
    };
    if let CacheTier2::Disk { dir, .. } = &mut setup.tier2
        && std::env::var_os("CACHE_L2_DIR").is_none()
    {
        *dir = data_dir.file("cache");
    }
    Ok(Some(setup))
}

/// The service's large-file tier (local copies of files too large for the cache, for a
/// remote backend): `CACHE_LARGE_MAX_BYTES` (default 4 GiB, `0` off) in `CACHE_LARGE_DIR`,
/// by default `{data_dir}/cache-large`.
pub fn large_files(data_dir: &DataDir) -> anyhow::Result<Option<LargeFileSetup>> {
    Ok(LargeFileSetup::from_env(data_dir.file("cache-large"))?)
}

/// Builds the manager the way `serve` and the CLI both do: storage, keys (checked against
/// `key-check`), upload limit, presigned URLs rooted at `base_url`, and the cache when given
/// (the service has one; a one-shot CLI command does not).
pub fn build(
    common: &CommonArgs,
    data_dir: &DataDir,
    storage: StorageConfig,
    base_url: String,
    cache: Option<CacheSetup>,
    large: Option<LargeFileSetup>,
) -> anyhow::Result<Built> {
    let mut notes = Vec::new();
    let keys = data_dir.encryption_keys(&mut notes)?;
    data_dir.check_keys(&keys)?;
    let secret = match common.presign_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Zeroizing::new(s.as_bytes().to_vec()),
        None => {
            let (s, created) = data_dir.secret(files::PRESIGN_KEY)?;
            if created {
                notes.push(format!(
                    "created the presigned-URL secret in {} (mode 0600)",
                    data_dir.file(files::PRESIGN_KEY).display()
                ));
            }
            Zeroizing::new(s.as_bytes().to_vec())
        }
    };
    let fm = FileManager::builder(storage)
        .keys(keys)
        .max_upload_bytes(common.max_upload_bytes)
        .presign(Some(PresignConfig { base_url, secret }))
        .cache(cache)
        .large_files(large)
        .build()?;
    Ok(Built { fm, notes })
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut buf = Zeroizing::new(vec![0u8; n]);
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates `path` (it must not exist) readable by its owner only, and writes `text`.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn restrict(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::open(&dir.path().join("d")).unwrap();
        let (a, created) = dd.secret("x.key").unwrap();
        assert!(created);
        assert_eq!(a.len(), 64);
        let (b, created) = dd.secret("x.key").unwrap();
        assert!(!created);
        assert_eq!(*a, *b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dd.file("x.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn key_check_refuses_a_key_that_did_not_write_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::open(dir.path()).unwrap();
        let k1 = KeyConfig::from_values(&"11".repeat(32), &[]).unwrap();
        let k2 = KeyConfig::from_values(&"22".repeat(32), &[]).unwrap();
        dd.check_keys(&k1).unwrap();
        dd.check_keys(&k1).unwrap();
        let err = dd.check_keys(&k2).unwrap_err().to_string();
        assert!(err.contains("cannot read the files"), "{err}");
        assert!(
            !err.contains(&"22".repeat(32)),
            "the message must not show a key"
        );
        // Rotation: new primary with the old key kept readable is fine, and is recorded.
        let rotated = KeyConfig::from_values(&"22".repeat(32), &[&"11".repeat(32)]).unwrap();
        dd.check_keys(&rotated).unwrap();
        assert!(dd.check_keys(&k2).is_err());
        dd.reset_key_ids(&k2).unwrap();
        dd.check_keys(&k2).unwrap();
    }
}
