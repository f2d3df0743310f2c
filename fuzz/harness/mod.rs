//! The fuzz harnesses: one function per fuzz target, each taking the fuzzer's bytes.
//!
//! This directory is compiled twice: by the cargo-fuzz targets in `fuzz/fuzz_targets/` (with
//! libFuzzer, AddressSanitizer and coverage instrumentation) and by the main crate's
//! `tests/fuzz_corpus.rs`, which feeds every file of the committed corpus (`fuzz/corpus/<target>/`)
//! through the same functions, so the corpus and every finding kept in it are regression tests of
//! `cargo test`. A harness panics (an assertion) only when ps3rt misbehaves: a panic escaping
//! ps3rt, a broken invariant, or an out-of-bounds access caught by the sanitizer.
#![allow(dead_code)]

pub mod c_api;
pub mod frame;
pub mod manifest;
pub mod package;

/// Reads structured values from the fuzzer's bytes; past the end every read gives zeros, so any
/// input is a valid (if short) program.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        let b = self.take(2);
        let mut a = [0u8; 2];
        a[..b.len()].copy_from_slice(b);
        u16::from_le_bytes(a)
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        let b = self.take(4);
        let mut a = [0u8; 4];
        a[..b.len()].copy_from_slice(b);
        u32::from_le_bytes(a)
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        let b = self.take(8);
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(a)
    }
}

/// A fuzz target: the name of its corpus directory and the function that runs one input.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets, by the name of their corpus directory.
pub const TARGETS: [Target; 4] = [
    ("manifest", manifest::run),
    ("package", package::run),
    ("frame", frame::run),
    ("c_api", c_api::run),
];
