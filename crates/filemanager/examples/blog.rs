//! The seed's `BlogFileManager`, in Rust: a domain-scoped handle does the work.
//!
//! Run: `cargo run -p filemanager --example blog`. It uses an in-memory store and a throw-away
//! key so it runs anywhere; with `FileManager::from_env()` the same code stores on local disk or
//! S3 as configured.

use bytes::Bytes;
use filemanager::{FileManager, KeyConfig, Scoped, StorageConfig, UploadOptions, UploadResult};

/// Blog files: featured images and attachments (APP level), author avatars (USER level).
struct BlogFileManager {
    files: Scoped,
}

impl BlogFileManager {
    fn new(fm: &FileManager) -> filemanager::Result<Self> {
        Ok(BlogFileManager {
            files: fm.domain("blog")?,
        })
    }

    async fn upload_featured_image(
        &self,
        post_id: u64,
        image: Bytes,
        filename: &str,
    ) -> filemanager::Result<UploadResult> {
        let opts = UploadOptions::default().content_type("image/jpeg");
        self.files
            .upload(&format!("posts/{post_id}/{filename}"), image, &opts)
            .await
    }

    async fn upload_avatar(&self, author: &str, image: Bytes) -> filemanager::Result<UploadResult> {
        let opts = UploadOptions::default().content_type("image/png");
        self.files
            .user(author)?
            .upload("avatar.png", image, &opts)
            .await
    }
}

#[tokio::main]
async fn main() -> filemanager::Result<()> {
    let key = "42".repeat(32); // 32 bytes in hex; use STORAGE_ENCRYPTION_KEY in real life
    let fm = FileManager::builder(StorageConfig::Memory)
        .keys(KeyConfig::from_values(&key, &[])?)
        .build()?;
    let blog = BlogFileManager::new(&fm)?;

    let image = blog
        .upload_featured_image(123, Bytes::from_static(b"\xff\xd8 jpeg bytes"), "cover.jpg")
        .await?;
    println!(
        "stored {} ({} bytes, encrypted: {})",
        image.file.key, image.file.size, image.file.encrypted
    );

    let avatar = blog
        .upload_avatar("alice", Bytes::from_static(b"\x89PNG"))
        .await?;
    println!("stored {}", avatar.file.key);

    let back = blog.files.download("posts/123/cover.jpg").await?;
    assert_eq!(&back[..], b"\xff\xd8 jpeg bytes");
    let listing = blog.files.list(&Default::default()).await?;
    println!("blog/app has {} file(s)", listing.count);
    Ok(())
}
