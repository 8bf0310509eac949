//! The one place with `unsafe` code: an arena that lends `&mut` values while it keeps growing,
//! and lets the holder of one lent value give its entry back while the others stay lent.
//!
//! An exit stack hands out `&'a mut V` from `&'a self` (so that the body can keep using the
//! values of every context it entered while it enters more), and later takes the entries back
//! to run their exits. Safe Rust cannot say this: the borrow of `self` is shared, the value
//! borrow is unique. The arena makes it sound by construction:
//!
//! - each entry lives in its own heap allocation, which never moves (its address is stable
//!   however the list of entries grows), so a lent `&mut V` stays valid; taking one entry out
//!   and freeing it touches no other entry's allocation;
//! - a value is lent exactly once, when its entry is pushed: either as a `&'a mut V`
//!   ([`Arena::push`]) or as a [`Claim`] ([`Arena::push_claimed`]), never both;
//! - every operation that takes entries out in general ([`Arena::pop`], [`Arena::take`],
//!   [`Arena::split`], [`Arena::append`], `Drop`) takes `&mut self` or `self`, so the borrow
//!   checker guarantees that no lent value, and no claim, is still alive then;
//! - the one operation that takes an entry out through `&self` is [`Claim::take`], and it takes
//!   only its own claim's entry. A claim is the only path to its value: the arena made it from the
//!   pointer to the value (no reference to that value was ever lent), it is not `Clone`, it
//!   reaches the value only through borrows of itself ([`Claim::get`], [`Claim::get_mut`]), and
//!   `take` consumes it before it frees the entry. The values lent by `push` live in other
//!   allocations, which `take` does not touch, so they stay usable;
//! - the list of slots is behind a `Mutex`, so that pushes and claimed takes through `&self`, on
//!   any number of threads at once, each see and leave it consistent. A slot only records where
//!   an entry is: the list is moved, compacted and searched without touching any entry.
//!
//! Entries are kept as raw pointers rather than `Box`es, so that moving the list (when it grows
//! or when [`Arena::split`] hands it over) does not retag a unique `Box` over memory that a lent
//! `&mut V` points into. A claim keeps its value as a raw pointer too, so that moving the claim
//! into [`Claim::take`] does not make a reference (protected for the duration of the call) into
//! the allocation that `take` frees. Miri runs the stack tests in CI.
//!
//! The list is kept in push order, each slot with the entry's *number* (from a counter of the
//! pushes of every arena, never reused): the newest entry is the last one, and [`Arena::take`]
//! finds an entry by its number (a binary search, the list being sorted). An entry taken from the
//! middle leaves an empty slot; empty slots at the end are dropped at once, so that the last slot
//! holds the newest entry. When the list is full, a push that finds at least half of it empty
//! compacts it instead of growing it, so that the list stays proportional to the live entries
//! however many are pushed and taken (each compaction is paid for by the pushes since the last
//! one). The count does not depend on which slots are left: a number is never found again once
//! its entry was taken, and a stale number cannot take a newer entry.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::Suppressed;

/// Pinned, heap-allocated entries of type `D` (a trait object), in push order.
///
/// `X` is what its owner keeps beside the entries under the same lock (a stack's orphaned
/// errors), so that one lock serves both and the arena stays one lock wide.
pub(crate) struct Arena<D: ?Sized, X = ()> {
    slots: Mutex<Slots<D, X>>,
}

struct Slots<D: ?Sized, X> {
    /// Sorted by number, oldest first; the last slot is never empty.
    list: Vec<Slot<D>>,
    beside: X,
}

/// The next entry's number, for every arena of the process: a number is never given twice
/// (the slots that held the last numbers of an arena may have been dropped, so its list cannot
/// tell), and one counter keeps each arena at the size of its list. Taken under the arena's
/// lock, so that each arena's numbers increase in push order.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl<D: ?Sized, X: Default> Slots<D, X> {
    fn new() -> Self {
        Slots { list: Vec::new(), beside: X::default() }
    }
}

struct Slot<D: ?Sized> {
    number: u64,
    entry: Option<NonNull<D>>,
}

// SAFETY: the arena owns its entries (each pointer comes from a `Box` and is freed exactly once),
// so sending the arena sends the entries: that is sound when `D: Send`. Sharing `&Arena` allows
// `push` and `push_claimed`, which lock the list and lend each caller a different value (lending
// `&mut V` or a claim to another thread is sound when `V` is `Send`, which `D: Send` implies for
// the entry that contains it), and `Claim::take`, which locks the list and moves the claim's own
// entry out to the thread that takes it: sound when `D: Send`.
// What is kept beside the entries is only reached under the lock (or through `&mut`), as a
// `Mutex<X>` is: sending or sharing it is sound when `X: Send`.
unsafe impl<D: ?Sized + Send, X: Send> Send for Arena<D, X> {}
// SAFETY: see above.
unsafe impl<D: ?Sized + Send, X: Send> Sync for Arena<D, X> {}

/// Adds `entry` as the newest, with the next number; returns its number.
fn push<D: ?Sized, X>(Slots { list: slots, .. }: &mut Slots<D, X>, entry: NonNull<D>) -> u64 {
    // Relaxed is enough: the lock orders the pushes of one arena, and the counter's single
    // modification order gives the later push the larger number.
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    if slots.len() == slots.capacity() {
        compact(slots);
    }
    slots.push(Slot { number, entry: Some(entry) });
    number
}

/// Before a push into a full list: compacts it if at least half its slots are empty (so that
/// compacting wins back as many slots as the pushes that fill them again), and gives back memory
/// if the list is then more than eight times too big, keeping room for twice the live entries.
fn compact<D: ?Sized>(slots: &mut Vec<Slot<D>>) {
    let live = slots.iter().filter(|slot| slot.entry.is_some()).count();
    if 2 * live <= slots.len() {
        slots.retain(|slot| slot.entry.is_some());
        if slots.capacity() > 8 * slots.len().max(4) {
            slots.shrink_to(2 * slots.len());
        }
    }
}

/// Takes the entry numbered `number` out of the list, if it is still there.
fn take<D: ?Sized, X>(slots: &mut Slots<D, X>, number: u64) -> Option<NonNull<D>> {
    let at = slots.list.binary_search_by_key(&number, |slot| slot.number).ok()?;
    let entry = slots.list[at].entry.take()?;
    trim(&mut slots.list);
    Some(entry)
}

/// Drops the empty slots at the end, so that the last slot holds the newest entry.
fn trim<D: ?Sized>(slots: &mut Vec<Slot<D>>) {
    while slots.last().is_some_and(|slot| slot.entry.is_none()) {
        slots.pop();
    }
}

impl<D: ?Sized, X: Default> Arena<D, X> {
    pub(crate) fn new() -> Self {
        Arena { slots: Mutex::new(Slots::new()) }
    }

    /// Moves every entry, and what is kept beside them, into a new arena, leaving this one
    /// empty. The entries keep their numbers (the stack that split it takes a new identity, so
    /// its keys cannot be confused).
    pub(crate) fn split(&mut self) -> Self {
        Arena { slots: Mutex::new(core::mem::replace(self.slots(), Slots::new())) }
    }
}

impl<D: ?Sized, X> Arena<D, X> {
    /// What is kept beside the entries, through `&self` (under the lock).
    pub(crate) fn beside<R>(&self, f: impl FnOnce(&mut X) -> R) -> R {
        f(&mut self.lock().beside)
    }

    /// What is kept beside the entries.
    pub(crate) fn beside_mut(&mut self) -> &mut X {
        &mut self.slots().beside
    }

    fn slots(&mut self) -> &mut Slots<D, X> {
        // A panic cannot leave the list half-updated (every update is one push, retain or
        // assignment), so a poisoned lock is still consistent.
        self.slots.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The list, through `&self`: see [`Arena::slots`] for why a poisoned lock is consistent.
    fn lock(&self) -> MutexGuard<'_, Slots<D, X>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `entry` for good, and returns its number and a pointer to the value `value` finds
    /// inside it. Lends nothing: [`Arena::push`] and [`Arena::push_claimed`] do, once.
    ///
    /// `erase` turns the concrete entry pointer into the arena's trait object: it must be an
    /// unsizing cast (`|p| p`), which keeps the address and the concrete type's vtable.
    fn push_raw<T, V>(
        &self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> (u64, NonNull<V>) {
        // SAFETY: the entry stays pinned: its allocation is only freed by `into_box`, which
        // pins it again, and nothing moves out of it in between.
        let raw: *mut T = Box::into_raw(unsafe { Pin::into_inner_unchecked(entry) });
        // SAFETY: `raw` is a live, unique allocation; the `&mut` made here is turned into a raw
        // pointer at once, before anything else touches the entry.
        let value = NonNull::from(value(unsafe { Pin::new_unchecked(&mut *raw) }));
        // SAFETY: `erase` is an unsizing cast of a non-null pointer.
        let erased = unsafe { NonNull::new_unchecked(erase(raw)) };
        // Compacting the list moves slots, never entries: the values lent so far stay put.
        (push(&mut self.lock(), erased), value)
    }

    /// Adds `entry` for good and lends the value `value` points to inside it, for as long as
    /// the arena is borrowed. Returns the entry's number (for [`Arena::take`]) and the value.
    /// See [`Arena::push_raw`] for `erase` and `value`.
    // Lending `&mut` from `&self` is the point of the arena; the lifetime says for how long.
    #[allow(clippy::mut_from_ref, clippy::needless_lifetimes)]
    pub(crate) fn push<'a, T, V>(
        &'a self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> (u64, &'a mut V) {
        let (number, value) = self.push_raw(entry, erase, value);
        // SAFETY: the value lives inside a heap allocation that is neither moved nor freed nor
        // accessed through the arena until the arena is borrowed mutably or dropped, which the
        // borrow `'a` of `self` rules out while the returned reference lives (the entry was not
        // claimed, so no `Claim::take` frees it). It is lent once, here.
        (number, unsafe { &mut *value.as_ptr() })
    }

    /// [`Arena::push`], lending the value as a [`Claim`], which can also take the entry back
    /// while the arena is only shared-borrowed.
    pub(crate) fn push_claimed<T, V>(
        &self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> Claim<'_, D, V, X> {
        let (number, value) = self.push_raw(entry, erase, value);
        Claim { arena: self, number, value, lent: PhantomData }
    }

    /// Takes the newest entry back.
    pub(crate) fn pop(&mut self) -> Option<Pin<Box<D>>> {
        let slots = &mut self.slots().list;
        let entry = slots.pop()?.entry?; // never empty, the last slot
        trim(slots);
        // SAFETY: `&mut self` proves that no lent value and no claim is alive.
        Some(unsafe { Self::into_box(entry) })
    }

    /// Takes the entry numbered `number` back, if it is still there.
    pub(crate) fn take(&mut self, number: u64) -> Option<Pin<Box<D>>> {
        let entry = take(self.slots(), number)?;
        // SAFETY: `&mut self` proves that no lent value and no claim is alive.
        Some(unsafe { Self::into_box(entry) })
    }

    /// Moves every entry of `other` on top of this arena's, in their order (so that the newest
    /// of `other` is the newest here), numbering them anew: a nested stack's entries, spliced
    /// into the stack around it. `erase` turns `other`'s trait object into this arena's: it
    /// must be an unsizing cast (`|p| p`: dropping an auto trait, or shortening a lifetime).
    pub(crate) fn append<O: ?Sized, Y>(&mut self, mut other: Arena<O, Y>, erase: fn(*mut O) -> *mut D) {
        let theirs = core::mem::take(&mut other.slots().list);
        let slots = self.slots();
        slots.list.reserve(theirs.len());
        for entry in theirs.into_iter().filter_map(|slot| slot.entry) {
            let erased = erase(entry.as_ptr());
            debug_assert!(core::ptr::addr_eq(erased, entry.as_ptr()), "`erase` must be an unsizing cast");
            push(slots, NonNull::new(erased).expect("async-with: an unsizing cast keeps the address"));
        }
    }

    /// Makes the entry a `Box` again, for its exit or its drop.
    ///
    /// # Safety
    ///
    /// `entry` was just taken out of the list, and nothing else reaches the value inside it: no
    /// lent `&mut V` (the caller holds `&mut self`) or no claim (the caller consumed it).
    unsafe fn into_box(entry: NonNull<D>) -> Pin<Box<D>> {
        // SAFETY: `entry` came from `Box::into_raw` in `push_raw` (through unsizing casts only,
        // in `push_raw` and `append`, so it has the allocation's address and its concrete type's
        // vtable), is taken out of the list once (so freed once), and was kept pinned; the
        // caller guarantees that nothing else reaches the value inside it.
        unsafe { Pin::new_unchecked(Box::from_raw(entry.as_ptr())) }
    }
}

impl<D: ?Sized, X> Drop for Arena<D, X> {
    /// Drops the remaining entries newest first, one at a time (no recursion, whatever their
    /// number). An entry whose drop panics does not stop the others: the panic is contained,
    /// so that nothing leaks, and a stack dropped while its thread unwinds does not abort it.
    fn drop(&mut self) {
        while let Some(entry) = self.pop() {
            crate::catch_unwind::quietly(move || drop(entry));
        }
    }
}

/// A value lent by [`Arena::push_claimed`]: the only path to it, for as long as the arena is
/// borrowed, and the right to take its entry back through that shared borrow ([`Claim::take`]).
/// Dropping it leaves the entry in the arena, as every other entry is.
pub(crate) struct Claim<'a, D: ?Sized, V, X = ()> {
    arena: &'a Arena<D, X>,
    number: u64,
    /// Inside the entry: a raw pointer, see the module docs.
    value: NonNull<V>,
    /// A claim is the `&'a mut V` it stands for.
    lent: PhantomData<&'a mut V>,
}

// SAFETY: a claim stands for `&'a mut V` and `&'a Arena<D>`, and is `Send` when both are: moving
// it to another thread moves the one path to the value there (sound when `V: Send`), and lets that
// thread take the entry through the shared arena (sound when `Arena<D>: Sync`, that is `D: Send`).
unsafe impl<D: ?Sized + Send, V: Send, X: Send> Send for Claim<'_, D, V, X> {}
// SAFETY: sharing `&Claim` only allows `Claim::get`, a `&V` (sound when `V: Sync`); the arena is
// required to be `Sync` as well, as it is for the `(&'a Arena<D>, &'a mut V)` a claim stands for.
unsafe impl<D: ?Sized + Send, V: Sync, X: Send> Sync for Claim<'_, D, V, X> {}

impl<D: ?Sized, V, X> Claim<'_, D, V, X> {
    /// The claimed value, for as long as the claim is borrowed.
    pub(crate) fn get(&self) -> &V {
        // SAFETY: the value lives in the claimed entry, which stays in the arena (not moved, not
        // freed, not touched through the arena: see `Claim::take`) until this claim is consumed;
        // the claim is the only path to it, and this borrows the claim.
        unsafe { self.value.as_ref() }
    }

    /// The claimed value, mutably, for as long as the claim is borrowed mutably.
    pub(crate) fn get_mut(&mut self) -> &mut V {
        // SAFETY: as in `Claim::get`; this borrows the claim mutably, so it is the only
        // reference to the value while it lives.
        unsafe { self.value.as_mut() }
    }

    /// Takes the claimed entry out of the arena, only shared-borrowed: the other values it lent
    /// stay usable.
    pub(crate) fn take(self) -> Pin<Box<D>> {
        // The entry is still there, and the number finds it (numbers are never given twice):
        // only `Arena::pop`, `take`, `split` and `Drop`, which the borrow `'a` rules out, or this
        // claim (made once per entry, and consumed here) take a claimed entry out; `append`
        // consumes the arena it takes entries from.
        let entry = take(&mut self.arena.lock(), self.number);
        let entry = entry.expect("async-with: a claimed entry stays in its arena");
        // SAFETY: the entry was just taken out of the list under the lock (no other take can
        // reach it); this claim, the only path to its value, is consumed here, so no reference
        // into the allocation is alive. The values lent from other entries live in other
        // allocations, which freeing this one does not touch.
        unsafe { Arena::<D, X>::into_box(entry) }
    }
}

/// Errors that belong to no caller, kept by a stack until it closes: rare, so boxed only once
/// there is one, and kept beside the entries under the arena's lock (the stack stays small
/// inside the scope's future).
// A box around the list keeps the field to one pointer (a `Vec` is three).
#[allow(clippy::box_collection)]
pub(crate) struct Orphans<E>(Option<Box<Vec<Suppressed<E>>>>);

impl<E> Default for Orphans<E> {
    fn default() -> Self {
        Orphans(None)
    }
}

impl<E> Orphans<E> {
    /// Adds errors; under the arena's lock, which a panic cannot leave half-updated (one
    /// `extend`), so a poisoned lock is still consistent.
    pub(crate) fn extend(&mut self, errors: impl IntoIterator<Item = Suppressed<E>>) {
        let mut errors = errors.into_iter().peekable();
        if errors.peek().is_some() {
            self.0.get_or_insert_with(Default::default).extend(errors);
        }
    }

    pub(crate) fn take(&mut self) -> Vec<Suppressed<E>> {
        self.0.take().map_or_else(Vec::new, |orphans| *orphans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of `n` slots (capacity `n`), all but the newest `live` taken out.
    fn slots_with(n: usize, live: usize) -> Slots<u8, ()> {
        let mut slots = Slots { list: Vec::with_capacity(n), beside: () };
        // The slots never read their entries: a dangling pointer stands for one.
        let numbers: Vec<u64> = (0..n).map(|_| push(&mut slots, NonNull::dangling())).collect();
        for &number in &numbers[..n - live] {
            assert!(take(&mut slots, number).is_some());
        }
        assert_eq!((slots.list.len(), slots.list.capacity()), (n, n));
        slots
    }

    #[test]
    fn a_full_list_half_empty_compacts_and_shrinks_only_when_eight_times_too_big() {
        // 5 live of 32: compacted, the capacity kept (32 is not above 8 * 5), so that a stack
        // that keeps entering and releasing does not reallocate each time.
        let mut slots = slots_with(32, 5);
        push(&mut slots, NonNull::dangling());
        assert_eq!((slots.list.len(), slots.list.capacity()), (6, 32));
        // 4 live of 32: exactly eight times, not above: kept too.
        let mut slots = slots_with(32, 4);
        push(&mut slots, NonNull::dangling());
        assert_eq!((slots.list.len(), slots.list.capacity()), (5, 32));
        // 5 live of 64: compacted and shrunk, to room for twice the live ones (seen before the
        // push, which would otherwise grow a list shrunk too far back to the same capacity).
        let mut slots = slots_with(64, 5);
        compact(&mut slots.list);
        assert_eq!(slots.list.len(), 5);
        let capacity = slots.list.capacity();
        assert!((10..64).contains(&capacity), "capacity {capacity}");
        push(&mut slots, NonNull::dangling());
        assert_eq!((slots.list.len(), slots.list.capacity()), (6, capacity));
    }

    #[test]
    fn a_full_list_more_than_half_live_grows_instead_of_compacting() {
        // 17 live of 32: compacting would win back only 15 slots, and a list kept nearly full
        // would be compacted again every few pushes (each push O(n)): it grows instead.
        let mut slots = slots_with(32, 17);
        push(&mut slots, NonNull::dangling());
        assert_eq!(slots.list.len(), 33);
        assert!(slots.list.capacity() >= 64, "capacity {}", slots.list.capacity());
        // 16 live of 32, exactly half: compacted.
        let mut slots = slots_with(32, 16);
        push(&mut slots, NonNull::dangling());
        assert_eq!((slots.list.len(), slots.list.capacity()), (17, 32));
    }
}
