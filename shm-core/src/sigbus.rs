//! A guard against `SIGBUS` for readers of region files.
//!
//! A mapped file that another process truncates turns every later access past its new end into
//! `SIGBUS`, which would kill the collector or the dump tool: "a reader never trusts the bytes"
//! must also cover the file shrinking under it. Readers that call [`install`] register each
//! region they map; the handler, on a fault inside a registered mapping, replaces the rest of
//! that mapping with anonymous zero pages (so the faulting read is retried and reads zeros, which
//! validation then rejects) and marks the region poisoned. Faults outside registered mappings
//! get the default action, as if no handler were installed.
//!
//! The handler only reads atomics and calls `mmap`/`signal` (async-signal-safe system calls).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

const SLOTS: usize = 4096;

struct Guard {
    start: AtomicUsize,
    len: AtomicUsize,
    poisoned: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Guard = Guard {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    poisoned: AtomicBool::new(false),
};
static GUARDS: [Guard; SLOTS] = [EMPTY; SLOTS];
static INSTALLED: AtomicBool = AtomicBool::new(false);
static PAGE: AtomicUsize = AtomicUsize::new(4096);

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    // Ordering: Relaxed: set once before any region is registered.
    let page = PAGE.load(Ordering::Relaxed);
    for g in &GUARDS {
        // Ordering: Acquire pairs with the Release store in `register`: `len` is the one
        // stored for this `start`.
        let start = g.start.load(Ordering::Acquire);
        // Ordering: Relaxed: ordered by the Acquire load above.
        let len = g.len.load(Ordering::Relaxed);
        if start != 0 && addr >= start && addr < start + len {
            let from = addr & !(page - 1);
            let rest = start + len - from;
            // SAFETY: [from, start + len) lies inside a mapping this process made and still
            // owns (it is unregistered before it is unmapped); replacing it with private zero
            // pages only changes what later reads of that range return.
            let r = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    rest,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                // Ordering: Release: seen by `poisoned`'s Acquire load after the reader's access.
                g.poisoned.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not a region of ours: the default action, when the faulting access is retried.
    // SAFETY: resetting a signal's disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}

/// Install the handler (once per process). Readers that never call it are not guarded.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            // Ordering: Relaxed: published by the Release store of INSTALLED below.
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction is a valid starting point; we set the handler, flags and
        // an empty mask before passing it to the kernel.
        let ok = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0
        };
        // Ordering: Release: registrations that see `true` see the page size.
        INSTALLED.store(ok, Ordering::Release);
    });
}

/// A registration of one mapping; unregisters on drop (before the mapping is unmapped).
pub(crate) struct Registration {
    slot: Option<usize>,
}

/// Register `[start, start + len)` if the guard is installed and a slot is free.
pub(crate) fn register(start: usize, len: usize) -> Registration {
    // Ordering: Acquire pairs with `install`'s Release store.
    if !INSTALLED.load(Ordering::Acquire) || start == 0 {
        return Registration { slot: None };
    }
    // Registrations are serialised (the handler never takes this lock).
    static REGISTER: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let _one_at_a_time = REGISTER.lock();
    for (i, g) in GUARDS.iter().enumerate() {
        // Ordering: Relaxed: registrations are serialised by the lock above.
        if g.start.load(Ordering::Relaxed) != 0 {
            continue;
        }
        // Ordering: Relaxed; published by the Release CAS of `start`.
        g.len.store(len, Ordering::Relaxed);
        // Ordering: Relaxed: reset before publication, see above.
        g.poisoned.store(false, Ordering::Relaxed);
        // Ordering: Release publishes `len` to the handler's Acquire load of `start`.
        if g.start
            .compare_exchange(0, start, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return Registration { slot: Some(i) };
        }
    }
    Registration { slot: None }
}

impl Registration {
    /// Whether a fault in this mapping was absorbed (the file shrank under the reader).
    pub(crate) fn poisoned(&self) -> bool {
        // Ordering: Acquire pairs with the handler's Release store.
        self.slot
            .is_some_and(|i| GUARDS[i].poisoned.load(Ordering::Acquire))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            // Ordering: Release: the handler stops matching this range before it is unmapped.
            GUARDS[i].start.store(0, Ordering::Release);
        }
    }
}
