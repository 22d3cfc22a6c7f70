//! Arbitrary bytes as an object header: parsing must never panic and must
//! round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    filemanager_codec::fuzzing::parse_header(data);
});
