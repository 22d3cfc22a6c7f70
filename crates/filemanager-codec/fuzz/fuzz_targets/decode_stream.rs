//! Arbitrary bytes as a stored object: stream, sliced-stream and range
//! decoding must never panic and must agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    filemanager_codec::fuzzing::decode_stream(data);
});
