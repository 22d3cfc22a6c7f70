//! Arbitrary (method, path, query) requests, and mutations of freshly signed URLs, through
//! `FileManager::verify_presigned`: never a panic, never a grant that was not signed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    filemanager_fuzz::checks::presign_verify(data);
});
