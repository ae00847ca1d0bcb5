//! Locks that survive a panicked holder. A thread that panicked while holding a lock leaves the
//! data as it was at the panic; every user of these locks keeps state that is valid between any
//! two statements (a ring buffer, a slot table), so the data is used as it is instead of
//! poisoning every later caller.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data as it is when a previous holder panicked.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
