//! The one place with `unsafe` code: an arena that lends `&mut` values while it keeps growing.
//!
//! An exit stack hands out `&'a mut V` from `&'a self` (so that the body can keep using the
//! values of every context it entered while it enters more), and later takes the entries back
//! to run their exits. Safe Rust cannot say this: the borrow of `self` is shared, the value
//! borrow is unique. The arena makes it sound by construction:
//!
//! - each entry lives in its own heap allocation, which never moves (its address is stable
//!   however the list of entries grows), so a lent `&mut V` stays valid;
//! - a value is lent exactly once, when its entry is pushed, and the entry is not touched again
//!   through the arena while `&self` is borrowed;
//! - every operation that touches entries ([`Arena::pop`], [`Arena::take`], [`Arena::split`],
//!   `Drop`) takes `&mut self` or `self`, so the borrow checker guarantees that no lent value is
//!   still alive then.
//!
//! Entries are kept as raw pointers rather than `Box`es, so that moving the list (when it grows
//! or when [`Arena::split`] hands it over) does not retag a unique `Box` over memory that a lent
//! `&mut V` points into. Miri runs the stack tests in CI.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::pin::Pin;
use core::ptr::NonNull;
use std::sync::Mutex;

/// Pinned, heap-allocated entries of type `D` (a trait object), indexed by push order.
pub(crate) struct Arena<D: ?Sized> {
    slots: Mutex<Vec<Option<NonNull<D>>>>,
}

// SAFETY: the arena owns its entries (each pointer comes from a `Box` and is freed exactly once),
// so sending the arena sends the entries: that is sound when `D: Send`. Sharing `&Arena` only
// allows `push`, which locks the list and lends each caller a different value; lending `&mut V`
// to another thread is sound when `V` is `Send`, which `D: Send` implies for the entry that
// contains it.
unsafe impl<D: ?Sized + Send> Send for Arena<D> {}
// SAFETY: see above.
unsafe impl<D: ?Sized + Send> Sync for Arena<D> {}

impl<D: ?Sized> Arena<D> {
    pub(crate) fn new() -> Self {
        Arena { slots: Mutex::new(Vec::new()) }
    }

    fn slots(&mut self) -> &mut Vec<Option<NonNull<D>>> {
        // A panic cannot leave the list half-updated (every update is one push or assignment),
        // so a poisoned lock is still consistent.
        self.slots.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `entry` for good and lends the value `value` points to inside it, for as long as
    /// the arena is borrowed. Returns the entry's index (for [`Arena::take`]) and the value.
    ///
    /// `erase` turns the concrete entry pointer into the arena's trait object (an unsizing
    /// cast, `|p| p as *mut dyn Trait`); `value` finds the value inside the entry.
    // Lending `&mut` from `&self` is the point of the arena; the lifetime says for how long.
    #[allow(clippy::mut_from_ref, clippy::needless_lifetimes)]
    pub(crate) fn push<'a, T, V>(
        &'a self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> (usize, &'a mut V) {
        // SAFETY: the entry stays pinned: its allocation is only freed by `into_box`, which
        // pins it again, and nothing moves out of it in between.
        let raw: *mut T = Box::into_raw(unsafe { Pin::into_inner_unchecked(entry) });
        // SAFETY: `raw` is a live, unique allocation; the `&mut` made here is turned into a raw
        // pointer at once, before anything else touches the entry.
        let value: *mut V = value(unsafe { Pin::new_unchecked(&mut *raw) });
        // SAFETY: `erase` is an unsizing cast of a non-null pointer.
        let erased = unsafe { NonNull::new_unchecked(erase(raw)) };
        let index = {
            let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.push(Some(erased));
            slots.len() - 1
        };
        // SAFETY: the value lives inside a heap allocation that is neither moved nor freed nor
        // accessed through the arena until the arena is borrowed mutably or dropped, which the
        // borrow `'a` of `self` rules out while the returned reference lives. It is lent once.
        (index, unsafe { &mut *value })
    }

    /// Takes the newest entry back.
    pub(crate) fn pop(&mut self) -> Option<Pin<Box<D>>> {
        loop {
            match self.slots().pop()? {
                Some(entry) => return Some(Self::into_box(entry)),
                None => continue, // released early
            }
        }
    }

    /// Takes the entry at `index` back, if it is still there.
    pub(crate) fn take(&mut self, index: usize) -> Option<Pin<Box<D>>> {
        self.slots().get_mut(index)?.take().map(Self::into_box)
    }

    /// Moves every entry into a new arena, leaving this one empty.
    pub(crate) fn split(&mut self) -> Self {
        Arena { slots: Mutex::new(core::mem::take(self.slots())) }
    }

    fn into_box(entry: NonNull<D>) -> Pin<Box<D>> {
        // SAFETY: `entry` came from `Box::into_raw` in `push`, is taken out of the list once
        // (so freed once), and was kept pinned; `&mut self` proves no lent value is alive.
        unsafe { Pin::new_unchecked(Box::from_raw(entry.as_ptr())) }
    }
}

impl<D: ?Sized> Drop for Arena<D> {
    /// Drops the remaining entries newest first, one at a time (no recursion, whatever their
    /// number).
    fn drop(&mut self) {
        while let Some(entry) = self.pop() {
            drop(entry);
        }
    }
}
