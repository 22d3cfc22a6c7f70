//! Fuzz targets for the `filemanager` library. The checks live in `checks.rs`, which the
//! stable test `crates/filemanager/tests/fuzz_corpus.rs` also compiles, so the checked-in
//! corpus is replayed through exactly the code the fuzzer runs.

pub mod checks;
