//! A scenario with numbers: every context and callback gets one, in the depth-first order its
//! `Debug` output shows, and every scope too. The interpreter and the oracle both start here.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::scenario::{Act, Body, Deadline, Item, Kind, Leaf, Node, Signal, Step};

pub(crate) enum PNode {
    With { id: usize, leaves: Vec<(usize, Leaf)>, body: PBody, chain: bool },
    Stack { id: usize, items: Vec<PItem>, body: PBody },
    Join { id: usize, all: bool, leaves: Vec<(usize, Leaf)>, body: PBody },
}

pub(crate) struct PBody {
    pub(crate) nested: Option<Box<PNode>>,
    pub(crate) step: Step,
    pub(crate) signal: Option<Signal>,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) hook_panics: bool,
}

pub(crate) enum PItem {
    Enter(Vec<(usize, Leaf)>),
    Defer(usize, Step),
    PushExit(usize, Step),
    Callback(usize, Act),
    EnterKeyed(Vec<(usize, Leaf)>),
    Release(u8),
    PopAll,
    TryEnter(Vec<(usize, Leaf)>),
}

#[derive(Default)]
struct Counters {
    leaf: usize,
    scope: usize,
}

impl Counters {
    fn leaf(&mut self) -> usize {
        self.leaf += 1;
        self.leaf - 1
    }

    fn leaves(&mut self, leaves: &[Leaf]) -> Vec<(usize, Leaf)> {
        leaves.iter().map(|leaf| (self.leaf(), *leaf)).collect()
    }

    fn body(&mut self, body: &Body) -> PBody {
        PBody {
            nested: body.nested.as_deref().map(|node| Box::new(self.node(node))),
            step: body.step,
            signal: body.signal,
            deadline: body.deadline,
            hook_panics: body.hook_panics,
        }
    }

    fn node(&mut self, node: &Node) -> PNode {
        let id = self.scope;
        self.scope += 1;
        match node {
            Node::With(leaves, body) | Node::Chain(leaves, body) => {
                let chain = matches!(node, Node::Chain(..));
                let leaves = self.leaves(leaves);
                PNode::With { id, leaves, body: self.body(body), chain }
            }
            Node::Stack(items, body) => {
                let items = items
                    .iter()
                    .map(|item| match item {
                        Item::Enter(leaves) => PItem::Enter(self.leaves(leaves)),
                        Item::Defer(step) => PItem::Defer(self.leaf(), *step),
                        Item::PushExit(step) => PItem::PushExit(self.leaf(), *step),
                        Item::Callback(act) => PItem::Callback(self.leaf(), *act),
                        Item::EnterKeyed(leaves) => PItem::EnterKeyed(self.leaves(leaves)),
                        Item::Release(n) => PItem::Release(*n),
                        Item::PopAll => PItem::PopAll,
                        Item::TryEnter(leaves) => PItem::TryEnter(self.leaves(leaves)),
                    })
                    .collect();
                PNode::Stack { id, items, body: self.body(body) }
            }
            Node::Join { all, branches, body } => {
                assert!(
                    branches.iter().all(|leaf| leaf.kind != Kind::EvalMapped),
                    "async-with testkit: a join's branches cannot be `Kind::EvalMapped`"
                );
                let leaves = self.leaves(branches);
                PNode::Join { id, all: *all, leaves, body: self.body(body) }
            }
        }
    }
}

pub(crate) fn plan(root: &Node) -> PNode {
    Counters::default().node(root)
}
