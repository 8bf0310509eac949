//! `arbitrary::Arbitrary` for scenarios, for the fuzz target: bytes decode into small trees of
//! the same shape as the proptest strategy's.

use alloc::boxed::Box;
use alloc::vec::Vec;

use arbitrary::{Arbitrary, Result, Unstructured};

use super::scenario::{Act, Body, Deadline, Interrupt, Item, Kind, Leaf, Node, Scenario, Signal, Step};

impl<'a> Arbitrary<'a> for Step {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let act = match u.int_in_range(0..=18)? {
            0..=15 => Act::Succeed,
            16 | 17 => Act::Fail,
            _ => Act::Panic,
        };
        Ok(Step { pending: u.int_in_range(0..=2)?, act })
    }
}

fn leaves(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<Leaf>> {
    let kind = Kind::arbitrary(u)?;
    let count = u.int_in_range(1..=max)?;
    (0..count).map(|_| Ok(Leaf { kind, enter: Step::arbitrary(u)?, exit: Step::arbitrary(u)? })).collect()
}

fn body(u: &mut Unstructured<'_>, depth: u8) -> Result<Body> {
    let nested = if depth < 2 && u.ratio(1, 3)? { Some(Box::new(node(u, depth + 1)?)) } else { None };
    let step = Step::arbitrary(u)?;
    // Signals on nested scopes too: a cancellation that starts inside and one that reaches in.
    let signal = if u.ratio(1, 4)? {
        Some(Signal { at: u.int_in_range(0..=15)?, panics: u.ratio(1, 4)? })
    } else {
        None
    };
    let deadline = if u.ratio(1, 5)? {
        Some(Deadline { after: u.int_in_range(0..=2)?, panics: u.ratio(1, 4)? })
    } else {
        None
    };
    let hook_panics = u.ratio(1, 10)?;
    Ok(Body { nested, step, signal, deadline, hook_panics })
}

fn node(u: &mut Unstructured<'_>, depth: u8) -> Result<Node> {
    // The byte of the `bool` this once was: odd for `with`, now a join a quarter of the time.
    let which: u8 = u.arbitrary()?;
    if which & 0b111 == 0b111 {
        let all = u.arbitrary()?;
        let count = if all { u.int_in_range(1..=4)? } else { 2 };
        // Any kind but `EvalMapped`, which a join's branches cannot be.
        let kind = match Kind::arbitrary(u)? {
            Kind::EvalMapped => Kind::Finalized,
            kind => kind,
        };
        let branches = (0..count)
            .map(|_| Ok(Leaf { kind, enter: Step::arbitrary(u)?, exit: Step::arbitrary(u)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Node::Join { all, branches, body: body(u, depth)? })
    } else if which & 0b111 == 0b101 {
        Ok(Node::Chain(leaves(u, 4)?, body(u, depth)?))
    } else if which & 1 == 1 {
        Ok(Node::With(leaves(u, 4)?, body(u, depth)?))
    } else {
        let count = u.int_in_range(0..=4)?;
        let items = (0..count)
            .map(|_| {
                Ok(match u.int_in_range(0..=11)? {
                    0..=3 => Item::Enter(leaves(u, 3)?),
                    4 => Item::Defer(Step::arbitrary(u)?),
                    5 => Item::PushExit(Step::arbitrary(u)?),
                    6 => Item::Callback(Step::arbitrary(u)?.act),
                    7 | 8 => Item::EnterKeyed(leaves(u, 3)?),
                    9 => Item::Release(u.int_in_range(0..=3)?),
                    10 => Item::PopAll,
                    _ => Item::TryEnter(leaves(u, 3)?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Node::Stack(items, body(u, depth)?))
    }
}

impl<'a> Arbitrary<'a> for Scenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let root = node(u, 0)?;
        let interrupt = match u.int_in_range(0..=5)? {
            0 => Interrupt::None,
            1 | 2 => Interrupt::CancelAt(u.int_in_range(0..=23)?),
            3 | 4 => Interrupt::DropAt(u.int_in_range(0..=31)?),
            _ => Interrupt::DetachAt(u.int_in_range(0..=31)?),
        };
        Ok(Scenario { root, interrupt })
    }
}
