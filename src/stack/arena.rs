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
//!   [`Arena::append`], `Drop`) takes `&mut self` or `self`, so the borrow checker guarantees
//!   that no lent value is still alive then.
//!
//! Entries are kept as raw pointers rather than `Box`es, so that moving the list (when it grows
//! or when [`Arena::split`] hands it over) does not retag a unique `Box` over memory that a lent
//! `&mut V` points into. Miri runs the stack tests in CI.
//!
//! The list is kept in push order, each slot with the entry's *number* (a count of the pushes,
//! never reused): the newest entry is the last one, and [`Arena::take`] finds an entry by its
//! number (a binary search, the list being sorted). An entry taken from the middle leaves an empty
//! slot; when the list is full, a push that finds at least half of it empty compacts it instead of
//! growing it, so that the list stays proportional to the live entries however many are pushed
//! and taken (each compaction is paid for by the pushes since the last one). The last slot is kept
//! even when it is empty, so that numbering goes on from it: a number is never found again once
//! its entry was taken, and a stale number cannot take a newer entry.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::pin::Pin;
use core::ptr::NonNull;
use std::sync::Mutex;

/// Pinned, heap-allocated entries of type `D` (a trait object), in push order.
pub(crate) struct Arena<D: ?Sized> {
    /// Sorted by number, oldest first; the last slot is empty only if every slot is.
    slots: Mutex<Vec<Slot<D>>>,
}

struct Slot<D: ?Sized> {
    number: u64,
    entry: Option<NonNull<D>>,
}

// SAFETY: the arena owns its entries (each pointer comes from a `Box` and is freed exactly once),
// so sending the arena sends the entries: that is sound when `D: Send`. Sharing `&Arena` only
// allows `push`, which locks the list and lends each caller a different value; lending `&mut V`
// to another thread is sound when `V` is `Send`, which `D: Send` implies for the entry that
// contains it.
unsafe impl<D: ?Sized + Send> Send for Arena<D> {}
// SAFETY: see above.
unsafe impl<D: ?Sized + Send> Sync for Arena<D> {}

/// Adds `entry` as the newest, numbered after the last slot; returns its number.
fn push<D: ?Sized>(slots: &mut Vec<Slot<D>>, entry: NonNull<D>) -> u64 {
    let number = slots.last().map_or(0, |slot| slot.number + 1);
    if slots.len() == slots.capacity() {
        let live = slots.iter().filter(|slot| slot.entry.is_some()).count();
        if 2 * live <= slots.len() {
            // Half empty: compact rather than grow (the number above keeps the count going).
            slots.retain(|slot| slot.entry.is_some());
            if slots.capacity() > 8 * slots.len().max(4) {
                slots.shrink_to(2 * slots.len());
            }
        }
    }
    slots.push(Slot { number, entry: Some(entry) });
    number
}

/// Drops the empty slots at the end but the last one, so that the last slot holds the newest
/// entry, or is the only one, empty (numbering goes on from it).
fn trim<D: ?Sized>(slots: &mut Vec<Slot<D>>) {
    while slots.len() > 1 && slots.last().is_some_and(|slot| slot.entry.is_none()) {
        slots.pop();
    }
}

impl<D: ?Sized> Arena<D> {
    pub(crate) fn new() -> Self {
        Arena { slots: Mutex::new(Vec::new()) }
    }

    fn slots(&mut self) -> &mut Vec<Slot<D>> {
        // A panic cannot leave the list half-updated (every update is one push, retain or
        // assignment), so a poisoned lock is still consistent.
        self.slots.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `entry` for good and lends the value `value` points to inside it, for as long as
    /// the arena is borrowed. Returns the entry's number (for [`Arena::take`]) and the value.
    ///
    /// `erase` turns the concrete entry pointer into the arena's trait object: it must be an
    /// unsizing cast (`|p| p`), which keeps the address and the concrete type's vtable. `value`
    /// finds the value inside the entry.
    // Lending `&mut` from `&self` is the point of the arena; the lifetime says for how long.
    #[allow(clippy::mut_from_ref, clippy::needless_lifetimes)]
    pub(crate) fn push<'a, T, V>(
        &'a self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> (u64, &'a mut V) {
        // SAFETY: the entry stays pinned: its allocation is only freed by `into_box`, which
        // pins it again, and nothing moves out of it in between.
        let raw: *mut T = Box::into_raw(unsafe { Pin::into_inner_unchecked(entry) });
        // SAFETY: `raw` is a live, unique allocation; the `&mut` made here is turned into a raw
        // pointer at once, before anything else touches the entry.
        let value: *mut V = value(unsafe { Pin::new_unchecked(&mut *raw) });
        // SAFETY: `erase` is an unsizing cast of a non-null pointer.
        let erased = unsafe { NonNull::new_unchecked(erase(raw)) };
        // Compacting the list moves slots, never entries: the values lent so far stay put.
        let number = push(&mut self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), erased);
        // SAFETY: the value lives inside a heap allocation that is neither moved nor freed nor
        // accessed through the arena until the arena is borrowed mutably or dropped, which the
        // borrow `'a` of `self` rules out while the returned reference lives. It is lent once.
        (number, unsafe { &mut *value })
    }

    /// Takes the newest entry back.
    pub(crate) fn pop(&mut self) -> Option<Pin<Box<D>>> {
        let slots = self.slots();
        let entry = slots.last_mut()?.entry.take()?; // empty only if every slot is
        trim(slots);
        Some(Self::into_box(entry))
    }

    /// Takes the entry numbered `number` back, if it is still there.
    pub(crate) fn take(&mut self, number: u64) -> Option<Pin<Box<D>>> {
        let slots = self.slots();
        let at = slots.binary_search_by_key(&number, |slot| slot.number).ok()?;
        let entry = slots[at].entry.take()?;
        trim(slots);
        Some(Self::into_box(entry))
    }

    /// Moves every entry into a new arena, leaving this one empty. The entries keep their
    /// numbers; this arena numbers its next entries from 0 again (the stack that split it takes
    /// a new identity, so its keys cannot be confused).
    pub(crate) fn split(&mut self) -> Self {
        Arena { slots: Mutex::new(core::mem::take(self.slots())) }
    }

    /// Moves every entry of `other` on top of this arena's, in their order (so that the newest
    /// of `other` is the newest here), numbering them anew: a nested stack's entries, spliced
    /// into the stack around it. `erase` turns `other`'s trait object into this arena's: it
    /// must be an unsizing cast (`|p| p`: dropping an auto trait, or shortening a lifetime).
    pub(crate) fn append<O: ?Sized>(&mut self, mut other: Arena<O>, erase: fn(*mut O) -> *mut D) {
        let theirs = core::mem::take(other.slots());
        let slots = self.slots();
        slots.reserve(theirs.len());
        for entry in theirs.into_iter().filter_map(|slot| slot.entry) {
            let erased = erase(entry.as_ptr());
            debug_assert!(core::ptr::addr_eq(erased, entry.as_ptr()), "`erase` must be an unsizing cast");
            push(slots, NonNull::new(erased).expect("async-with: an unsizing cast keeps the address"));
        }
    }

    fn into_box(entry: NonNull<D>) -> Pin<Box<D>> {
        // SAFETY: `entry` came from `Box::into_raw` in `push` (through unsizing casts only, in
        // `push` and `append`, so it has the allocation's address and its concrete type's
        // vtable), is taken out of the list once (so freed once), and was kept pinned;
        // `&mut self` proves no lent value is alive.
        unsafe { Pin::new_unchecked(Box::from_raw(entry.as_ptr())) }
    }
}

impl<D: ?Sized> Drop for Arena<D> {
    /// Drops the remaining entries newest first, one at a time (no recursion, whatever their
    /// number). An entry whose drop panics does not stop the others: the panic is contained,
    /// so that nothing leaks, and a stack dropped while its thread unwinds does not abort it.
    fn drop(&mut self) {
        while let Some(entry) = self.pop() {
            crate::unwind::quietly(move || drop(entry));
        }
    }
}
