//! The HTTP `Range` header parser and range resolution: never panic, and every range served
//! lies inside the file.
#![no_main]

use axum::http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let Some(range) = filemanager_bin::http::range::parse(Some(&value)) else {
        return;
    };
    for size in [0u64, 1, 2, 10, 65_536, 1 << 40, u64::MAX] {
        if let Ok(r) = range.resolve(size) {
            assert!(r.start < r.end && r.end <= size, "{range:?} in {size} gave {r:?}");
            let header = filemanager_bin::http::range::content_range(&r, size);
            assert!(header.starts_with("bytes "), "{header}");
        }
    }
});
