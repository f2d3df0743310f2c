//! How a package file's bytes are held: in memory, or mapped from the package directory, and how
//! a mapped file's pages leave the process's resident set once a backend has taken what it needs
//! from them.
//!
//! Why map: a full-size package's weights (1.8 GB for SO400M) are read once while a backend builds
//! its own copies (tract's packed tensors, ONNX Runtime's pre-packed matrices) and hardly touched
//! after. Read into the heap they stay resident for as long as anything holds the package (ONNX
//! Runtime's sessions do: it may point into the weights it was given); mapped, they are page-cache
//! pages that [`FileBytes::release_pages`] drops from this process and that the kernel faults back
//! in from the file if a backend reads them again (ONNX Runtime does for the few initializers it
//! does not pre-pack). ONNX Runtime does the same with a model it loads by path.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

/// Files at least this large are mapped (when mapping is on); smaller ones are read. Mapping costs
/// a system call and a page-aligned range; it pays off only where the bytes matter to the RSS.
pub(crate) const MAP_THRESHOLD: u64 = 64 << 10;

/// The environment variable that turns mapping off (`0`): every file is then read into memory. For
/// packages whose files may be rewritten in place while a process uses them (a mapped file that
/// is truncated or rewritten under a running process changes the weights it reads, or faults).
pub const MAP_ENV: &str = "PS3RT_PACKAGE_MMAP";

/// Release mapped pages in steps of this size while hashing, so verifying a file never holds more
/// than this much of it resident.
pub(crate) const HASH_CHUNK: usize = 64 << 20;

/// The bytes of one package file.
#[derive(Clone)]
pub(crate) enum FileBytes {
    /// In memory (small files, `PS3RT_PACKAGE_MMAP=0`, files given in memory, the embedded package).
    Heap(Arc<[u8]>),
    /// Mapped read-only from the package directory.
    Mapped(Arc<memmap2::Mmap>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Heap(b) => b,
            FileBytes::Mapped(m) => m,
        }
    }
}

/// Whether files may be mapped: on unless `PS3RT_PACKAGE_MMAP` turns it off.
pub(crate) fn mapping_enabled() -> bool {
    switch_on(MAP_ENV)
}

/// Whether the on-by-default switch in environment variable `var` is on (see [`switch_allows`]).
pub(crate) fn switch_on(var: &str) -> bool {
    switch_allows(std::env::var(var).ok().as_deref())
}

/// Whether the value `value` of an on-by-default switch leaves it on: anything but `0`, `false`,
/// `no` and `off` (any case, surrounding blanks ignored) does, and so does no value.
pub(crate) fn switch_allows(value: Option<&str>) -> bool {
    value.is_none_or(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    })
}

impl FileBytes {
    /// Read or map the open regular file `file` of `len` bytes (its size when it was checked).
    /// `map`: whether mapping is allowed. A read stops at `len + 1` bytes, so a file that grew since
    /// it was checked shows up as a size mismatch, not as an unbounded read.
    pub(crate) fn load(file: File, len: u64, map: bool) -> std::io::Result<FileBytes> {
        if map && len >= MAP_THRESHOLD {
            // SAFETY: the mapping is read-only (memmap2's `Mmap`: PROT_READ, MAP_SHARED), of a
            // regular file (the caller refused symbolic links and anything else), and only ever
            // read through `&[u8]`. Its contents are the file's: if another process truncated or
            // rewrote the file in place while it is mapped, reads would see the new bytes or fault. The package's documented contract
            // (docs/reliability.md, threat model) is that files are not rewritten in place while a
            // process uses them (replace a package by writing a new directory), and
            // `PS3RT_PACKAGE_MMAP=0` reads them instead where that cannot be promised.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            return Ok(FileBytes::Mapped(Arc::new(map)));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(len.saturating_add(1)).read_to_end(&mut bytes)?;
        Ok(FileBytes::Heap(Arc::from(bytes)))
    }

    /// Whether these bytes are a mapping of a file.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, FileBytes::Mapped(_))
    }

    /// Drop the mapped pages in `range` from this process's resident set (no-op for bytes in
    /// memory). The data stays readable: a later read faults the pages back in from the page cache
    /// or the file. Returns whether the kernel accepted the advice.
    pub(crate) fn release_range(&self, range: std::ops::Range<usize>) -> bool {
        let FileBytes::Mapped(map) = self else {
            return false;
        };
        let range = range.start.min(map.len())..range.end.min(map.len());
        if range.is_empty() {
            return true;
        }
        release_mapped(map, range)
    }

    /// [`FileBytes::release_range`] over the whole file.
    pub(crate) fn release_pages(&self) -> bool {
        self.release_range(0..self.len())
    }
}

#[cfg(unix)]
fn release_mapped(map: &memmap2::Mmap, range: std::ops::Range<usize>) -> bool {
    // SAFETY: MADV_DONTNEED on a read-only shared file mapping (memmap2's `Mmap`: PROT_READ,
    // MAP_SHARED; it gives out `&[u8]` only, so nothing in it was ever written) only unmaps the
    // pages: a later read faults them in again from the page cache or the file, with the file's
    // contents, which the package contract keeps unchanged (see `FileBytes::load`). No reference
    // observes a change, which is what memmap2's "unchecked" marks (for private writable or
    // anonymous mappings, DONTNEED would discard or zero data).
    unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
    }
    .is_ok()
}

#[cfg(not(unix))]
fn release_mapped(_map: &memmap2::Mmap, _range: std::ops::Range<usize>) -> bool {
    false
}
