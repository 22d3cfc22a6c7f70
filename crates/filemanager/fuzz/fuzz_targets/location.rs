//! Arbitrary bytes as a location URL path, a storage key and a scope URL path: every accepted
//! location stays under its prefix and round-trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    filemanager_fuzz::checks::location(data);
});
