//! Per-thread caches from Python strings (and call sites) to interned [`Symbol`]s.
//!
//! `Symbol::intern` takes the process's table lock, so names are looked up here first: by the
//! address of the Python `str` object (keyword names and literals are the same object on
//! every call). Each cached entry holds a strong reference to its key object, so the address
//! cannot be reused by another string while the entry exists. The address cache is bounded;
//! past it, strings are interned by content through a second map.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;
use shmtel_core::Symbol;

/// Entries kept per map before falling back to interning by content.
const MAX_ENTRIES: usize = 8192;

/// Hashes an address (or an address and a line): a multiply spreads the aligned low bits.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u64);
    }
}

type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

#[derive(Default)]
struct Cache {
    by_addr: AddrMap<usize, (Py<PyString>, Symbol)>,
    by_text: HashMap<Box<str>, Symbol>,
    callers: AddrMap<(usize, i32), (Py<PyAny>, Symbol)>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The symbol of a Python string.
#[inline]
pub fn symbol(s: &Bound<'_, PyString>) -> Symbol {
    let addr = s.as_ptr() as usize;
    let hit = CACHE
        .try_with(|c| c.borrow().by_addr.get(&addr).map(|e| e.1))
        .ok()
        .flatten();
    match hit {
        Some(sym) => sym,
        None => symbol_slow(s),
    }
}

#[cold]
fn symbol_slow(s: &Bound<'_, PyString>) -> Symbol {
    let text = s.to_string_lossy();
    let sym = symbol_of_text(&text);
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.by_addr.len() < MAX_ENTRIES {
            c.by_addr
                .insert(s.as_ptr() as usize, (s.clone().unbind(), sym));
        }
    });
    sym
}

/// The symbol of a Rust string (by content).
pub fn symbol_of_text(text: &str) -> Symbol {
    let hit = CACHE
        .try_with(|c| c.borrow().by_text.get(text).copied())
        .ok()
        .flatten();
    if let Some(sym) = hit {
        return sym;
    }
    let sym = Symbol::intern(text);
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        // Bounded by what the process's table can hold; but keep the map itself bounded too.
        if c.by_text.len() < 4 * MAX_ENTRIES {
            c.by_text.insert(text.into(), sym);
        }
    });
    sym
}

/// The caller symbol (`file:line function`) of the innermost Python frame, interned once per
/// (code object, line). `Symbol::EMPTY` when there is no Python frame.
pub fn caller(py: Python<'_>) -> Symbol {
    // SAFETY: the thread is attached to the interpreter (we hold `py`); the frame is borrowed
    // and only used within this call.
    let frame = unsafe { ffi::PyEval_GetFrame() };
    if frame.is_null() {
        return Symbol::EMPTY;
    }
    // SAFETY: `frame` is a live frame object of this thread (see above).
    let line = unsafe { ffi::PyFrame_GetLineNumber(frame) };
    // SAFETY: as above; PyFrame_GetCode returns a new (never NULL) reference.
    let code = unsafe { Bound::from_owned_ptr(py, ffi::PyFrame_GetCode(frame).cast()) };
    let key = (code.as_ptr() as usize, line);
    let hit = CACHE
        .try_with(|c| c.borrow().callers.get(&key).map(|e| e.1))
        .ok()
        .flatten();
    if let Some(sym) = hit {
        return sym;
    }
    let attr = |name: &str| -> String {
        code.getattr(name)
            .ok()
            .and_then(|v| v.extract::<String>().ok())
            .unwrap_or_default()
    };
    let file = attr("co_filename");
    let mut func = attr("co_qualname");
    if func.is_empty() {
        func = attr("co_name");
    }
    let sym = symbol_of_text(&format!("{file}:{line} {func}"));
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.callers.len() < MAX_ENTRIES {
            c.callers.insert(key, (code.clone().unbind(), sym));
        }
    });
    sym
}
