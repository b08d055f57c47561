//! The store's ordered map: a persistent (copy-on-write) B+tree of [`Entry`]s, one heap block
//! per pair holding key and value together (ADR 0185).
//!
//! - An [`Entry`] is `[key length, LEB128][key][value]` in one `Box<[u8]>`: 16 bytes in its
//!   leaf, one allocation of exactly its bytes (no reference count, no `Bytes` header).
//! - Nodes are shared through `Arc`: [`Tree::clone`] is O(1) and gives a point-in-time view
//!   that later writes never change. A write copies the nodes on its path that a view still
//!   shares (`Arc::make_mut`), entries included (a leaf holds at most [`LEAF_CAP`]); once the
//!   views are dropped, writes work in place again.
//! - [`Tree::from_sorted`] builds full leaves bottom-up (the snapshot load), and an insert at
//!   the end of a leaf splits it leaving the left one full, so ascending inserts fill nodes too.
//!
//! Invariants (checked by [`Tree::check`] in the tests):
//! - every leaf is at the same depth; entries ascend strictly across the whole tree;
//! - in a branch, `lows[i]` (for `i >= 1`) is at most every key under `children[i]` and greater
//!   than every key under `children[i - 1]`; `lows[0]` is not used;
//! - a branch has at least one child, a node at most [`LEAF_CAP`] / [`BRANCH_CAP`] items; only
//!   the root may be an empty leaf; a root branch has at least two children;
//! - `len` is the number of entries.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

/// Most entries in one leaf.
pub(crate) const LEAF_CAP: usize = 32;
/// Most children of one branch.
pub(crate) const BRANCH_CAP: usize = 32;
/// A node with fewer items than this is merged with a neighbour when they fit in one.
const MERGE_BELOW: usize = 8;

/// One key-value pair in one allocation: `[key length, LEB128][key][value]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Entry(Box<[u8]>);

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key())
            .field("value_len", &self.value().len())
            .finish()
    }
}

impl Entry {
    /// A copy of `key` and `value` in one block.
    pub(crate) fn new(key: &[u8], value: &[u8]) -> Entry {
        let mut length_bytes = 1u32;
        while key.len().checked_shr(7 * length_bytes).unwrap_or(0) != 0 {
            length_bytes += 1;
        }
        // Exactly the entry's size: a larger capacity shrunk by `into_boxed_slice` may keep
        // its larger malloc chunk (glibc does not split off less than 32 bytes).
        let mut bytes = Vec::with_capacity(length_bytes as usize + key.len() + value.len());
        let mut n = key.len() as u64;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        debug_assert_eq!(bytes.len(), bytes.capacity());
        Entry(bytes.into_boxed_slice())
    }

    /// Where the key starts and its length.
    fn split(&self) -> (usize, usize) {
        let mut len = 0usize;
        let mut shift = 0u32;
        for (i, byte) in self.0.iter().enumerate() {
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return (i + 1, len);
            }
            shift += 7;
        }
        // `new` always writes a terminated length; this is unreachable for entries it made.
        (self.0.len(), 0)
    }

    pub(crate) fn key(&self) -> &[u8] {
        let (start, len) = self.split();
        &self.0[start..start + len]
    }

    pub(crate) fn value(&self) -> &[u8] {
        let (start, len) = self.split();
        &self.0[start + len..]
    }

    /// Key and value bytes (the store's payload accounting).
    pub(crate) fn payload_len(&self) -> u64 {
        let (start, _) = self.split();
        (self.0.len() - start) as u64
    }

    /// The value as `Bytes`, without copying it (the block becomes the `Bytes`' buffer).
    pub(crate) fn into_value(self) -> Bytes {
        let (start, len) = self.split();
        Bytes::from(self.0).slice(start + len..)
    }

    /// The value as a fresh `Bytes` (a copy).
    pub(crate) fn value_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.value())
    }
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(Arc<Vec<Entry>>),
    Branch(Arc<Branch>),
}

#[derive(Clone, Debug)]
struct Branch {
    /// `lows[i]`: the separator below `children[i]` (see the module invariants).
    lows: Vec<Box<[u8]>>,
    children: Vec<Node>,
}

impl Branch {
    /// The child whose keys include `key`'s position.
    fn child_index(&self, key: &[u8]) -> usize {
        self.lows[1..].partition_point(|low| low.as_ref() <= key)
    }
}

impl Node {
    fn items(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.len(),
            Node::Branch(branch) => branch.children.len(),
        }
    }

    fn first_key(&self) -> Option<&[u8]> {
        let mut node = self;
        loop {
            match node {
                Node::Leaf(entries) => return entries.first().map(Entry::key),
                Node::Branch(branch) => node = branch.children.first()?,
            }
        }
    }
}

/// A split-off right sibling and its separator.
type Split = Option<(Box<[u8]>, Node)>;

/// Vec::insert without the doubling growth (nodes stay close to their size).
fn insert_exact<T>(items: &mut Vec<T>, at: usize, item: T) {
    if items.len() == items.capacity() {
        items.reserve_exact(1);
    }
    items.insert(at, item);
}

fn insert(node: &mut Node, entry: Entry) -> (Option<Entry>, Split) {
    match node {
        Node::Leaf(entries) => {
            let entries = Arc::make_mut(entries);
            match entries.binary_search_by(|e| e.key().cmp(entry.key())) {
                Ok(i) => (Some(std::mem::replace(&mut entries[i], entry)), None),
                Err(i) => {
                    insert_exact(entries, i, entry);
                    if entries.len() <= LEAF_CAP {
                        return (None, None);
                    }
                    // Appending keeps the left leaf full (ascending inserts fill leaves).
                    let at = if i == LEAF_CAP {
                        LEAF_CAP
                    } else {
                        entries.len() / 2
                    };
                    let right = entries.split_off(at);
                    let low: Box<[u8]> = right[0].key().into();
                    (None, Some((low, Node::Leaf(Arc::new(right)))))
                }
            }
        }
        Node::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let i = branch.child_index(entry.key());
            let (old, split) = insert(&mut branch.children[i], entry);
            let Some((low, right)) = split else {
                return (old, None);
            };
            insert_exact(&mut branch.lows, i + 1, low);
            insert_exact(&mut branch.children, i + 1, right);
            if branch.children.len() <= BRANCH_CAP {
                return (old, None);
            }
            let at = if i + 1 == BRANCH_CAP {
                BRANCH_CAP
            } else {
                branch.children.len() / 2
            };
            let children = branch.children.split_off(at);
            let lows = branch.lows.split_off(at);
            let low = lows[0].clone();
            (
                old,
                Some((low, Node::Branch(Arc::new(Branch { lows, children })))),
            )
        }
    }
}

fn remove(node: &mut Node, key: &[u8]) -> Option<Entry> {
    match node {
        Node::Leaf(entries) => {
            let i = entries.binary_search_by(|e| e.key().cmp(key)).ok()?;
            Some(Arc::make_mut(entries).remove(i))
        }
        Node::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let i = branch.child_index(key);
            let removed = remove(&mut branch.children[i], key)?;
            let items = branch.children[i].items();
            if items == 0 {
                branch.children.remove(i);
                branch.lows.remove(i);
            } else if items < MERGE_BELOW {
                if i + 1 < branch.children.len()
                    && items + branch.children[i + 1].items() <= cap(&branch.children[i])
                {
                    merge(branch, i);
                } else if i > 0
                    && items + branch.children[i - 1].items() <= cap(&branch.children[i])
                {
                    merge(branch, i - 1);
                }
            }
            Some(removed)
        }
    }
}

fn cap(node: &Node) -> usize {
    match node {
        Node::Leaf(_) => LEAF_CAP,
        Node::Branch(_) => BRANCH_CAP,
    }
}

/// Merges `children[i + 1]` into `children[i]` (same kind: every leaf is at one depth).
fn merge(branch: &mut Branch, i: usize) {
    let separator = branch.lows.remove(i + 1);
    let right = branch.children.remove(i + 1);
    match (&mut branch.children[i], right) {
        (Node::Leaf(left), Node::Leaf(right)) => {
            Arc::make_mut(left).extend(Arc::unwrap_or_clone(right));
        }
        (Node::Branch(left), Node::Branch(right)) => {
            let mut right = Arc::unwrap_or_clone(right);
            right.lows[0] = separator;
            let left = Arc::make_mut(left);
            left.lows.extend(right.lows);
            left.children.extend(right.children);
        }
        // Unreachable: siblings are at the same depth. Put it back rather than lose data.
        (_, right) => {
            branch.children.insert(i + 1, right);
            let low = branch.children[i + 1]
                .first_key()
                .unwrap_or_default()
                .into();
            branch.lows.insert(i + 1, low);
        }
    }
}

/// The persistent ordered map (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    root: Node,
    len: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: Node::Leaf(Arc::new(Vec::new())),
            len: 0,
        }
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Tree {
    /// Builds the tree from entries in strictly ascending key order (the caller checks the
    /// order): full leaves and branches, bottom-up, O(n).
    pub(crate) fn from_sorted(entries: impl IntoIterator<Item = Entry>) -> Tree {
        let mut level: Vec<Node> = Vec::new();
        let mut lows: Vec<Box<[u8]>> = Vec::new();
        let mut leaf = Vec::with_capacity(LEAF_CAP);
        let mut len = 0;
        for entry in entries {
            if leaf.len() == LEAF_CAP {
                let full = std::mem::replace(&mut leaf, Vec::with_capacity(LEAF_CAP));
                level.push(Node::Leaf(Arc::new(full)));
            }
            if leaf.is_empty() {
                lows.push(entry.key().into());
            }
            leaf.push(entry);
            len += 1;
        }
        if !leaf.is_empty() {
            leaf.shrink_to_fit();
            level.push(Node::Leaf(Arc::new(leaf)));
        }
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len().div_ceil(BRANCH_CAP));
            let mut next_lows = Vec::with_capacity(next.capacity());
            let mut nodes = level.into_iter();
            let mut node_lows = lows.into_iter();
            loop {
                let children: Vec<Node> = nodes.by_ref().take(BRANCH_CAP).collect();
                if children.is_empty() {
                    break;
                }
                let branch_lows: Vec<Box<[u8]>> = node_lows.by_ref().take(children.len()).collect();
                next_lows.push(branch_lows[0].clone());
                next.push(Node::Branch(Arc::new(Branch {
                    lows: branch_lows,
                    children,
                })));
            }
            level = next;
            lows = next_lows;
        }
        Tree {
            root: level
                .pop()
                .unwrap_or_else(|| Node::Leaf(Arc::new(Vec::new()))),
            len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Entry> {
        let mut node = &self.root;
        loop {
            match node {
                Node::Leaf(entries) => {
                    return entries
                        .binary_search_by(|e| e.key().cmp(key))
                        .ok()
                        .map(|i| &entries[i]);
                }
                Node::Branch(branch) => node = &branch.children[branch.child_index(key)],
            }
        }
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Inserts `entry`, returning the entry it replaced.
    pub(crate) fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let (old, split) = insert(&mut self.root, entry);
        if let Some((low, right)) = split {
            let left = std::mem::replace(&mut self.root, Node::Leaf(Arc::new(Vec::new())));
            self.root = Node::Branch(Arc::new(Branch {
                lows: vec![Box::default(), low],
                children: vec![left, right],
            }));
        }
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`, returning its entry. A missing key changes (and copies) nothing.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        if !self.contains_key(key) {
            return None;
        }
        let removed = remove(&mut self.root, key)?;
        self.len -= 1;
        loop {
            let only = match &self.root {
                Node::Branch(branch) if branch.children.len() == 1 => branch.children[0].clone(),
                Node::Branch(branch) if branch.children.is_empty() => {
                    Node::Leaf(Arc::new(Vec::new()))
                }
                _ => break,
            };
            self.root = only;
        }
        Some(removed)
    }

    /// Every entry, ascending.
    pub(crate) fn iter(&self) -> Iter<'_> {
        self.iter_from(Bound::Unbounded)
    }

    /// The entries from `low` on, ascending.
    pub(crate) fn iter_from(&self, low: Bound<&[u8]>) -> Iter<'_> {
        let mut stack = Vec::new();
        let mut node = &self.root;
        loop {
            match node {
                Node::Branch(branch) => {
                    let i = match low {
                        Bound::Unbounded => 0,
                        Bound::Included(k) | Bound::Excluded(k) => branch.child_index(k),
                    };
                    stack.push((&branch.children[..], i));
                    node = &branch.children[i];
                }
                Node::Leaf(entries) => {
                    let pos = match low {
                        Bound::Unbounded => 0,
                        Bound::Included(k) => entries.partition_point(|e| e.key() < k),
                        Bound::Excluded(k) => entries.partition_point(|e| e.key() <= k),
                    };
                    return Iter {
                        stack,
                        leaf: entries,
                        pos,
                    };
                }
            }
        }
    }

    /// The entries up to `high`, descending.
    pub(crate) fn iter_rev_from(&self, high: Bound<&[u8]>) -> RevIter<'_> {
        let mut stack = Vec::new();
        let mut node = &self.root;
        loop {
            match node {
                Node::Branch(branch) => {
                    let i = match high {
                        Bound::Unbounded => branch.children.len() - 1,
                        Bound::Included(k) | Bound::Excluded(k) => branch.child_index(k),
                    };
                    stack.push((&branch.children[..], i));
                    node = &branch.children[i];
                }
                Node::Leaf(entries) => {
                    let pos = match high {
                        Bound::Unbounded => entries.len(),
                        Bound::Included(k) => entries.partition_point(|e| e.key() <= k),
                        Bound::Excluded(k) => entries.partition_point(|e| e.key() < k),
                    };
                    return RevIter {
                        stack,
                        leaf: entries,
                        pos,
                    };
                }
            }
        }
    }

    /// Checks the module invariants (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn walk<'t>(
            node: &'t Node,
            depth: usize,
            leaf_depth: &mut Option<usize>,
            previous: &mut Option<&'t [u8]>,
            count: &mut usize,
            is_root: bool,
        ) {
            match node {
                Node::Leaf(entries) => {
                    assert!(entries.len() <= LEAF_CAP);
                    assert!(is_root || !entries.is_empty(), "empty non-root leaf");
                    assert_eq!(
                        *leaf_depth.get_or_insert(depth),
                        depth,
                        "leaf depths differ"
                    );
                    for e in entries.iter() {
                        if let Some(p) = previous {
                            assert!(*p < e.key(), "keys out of order");
                        }
                        *previous = Some(e.key());
                        *count += 1;
                    }
                }
                Node::Branch(branch) => {
                    assert!(!branch.children.is_empty() && branch.children.len() <= BRANCH_CAP);
                    assert!(
                        !is_root || branch.children.len() >= 2,
                        "root with one child"
                    );
                    assert_eq!(branch.lows.len(), branch.children.len());
                    for (i, child) in branch.children.iter().enumerate() {
                        let before = *previous;
                        walk(child, depth + 1, leaf_depth, previous, count, false);
                        if i > 0 {
                            let low = branch.lows[i].as_ref();
                            if let Some(first) = child.first_key() {
                                assert!(low <= first, "separator above its child");
                            }
                            if let Some(b) = before {
                                assert!(b < low, "separator not above the left sibling");
                            }
                        }
                    }
                }
            }
        }
        let mut count = 0;
        walk(&self.root, 0, &mut None, &mut None, &mut count, true);
        assert_eq!(count, self.len, "len");
    }
}

impl FromIterator<(Vec<u8>, Vec<u8>)> for Tree {
    /// Any order (tests): inserted one by one.
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(pairs: I) -> Self {
        let mut tree = Tree::default();
        for (k, v) in pairs {
            tree.insert(Entry::new(&k, &v));
        }
        tree
    }
}

/// Ascending iterator (see [`Tree::iter_from`]).
pub(crate) struct Iter<'t> {
    /// The branches above the current leaf and the child index taken in each.
    stack: Vec<(&'t [Node], usize)>,
    leaf: &'t [Entry],
    pos: usize,
}

impl<'t> Iterator for Iter<'t> {
    type Item = &'t Entry;

    fn next(&mut self) -> Option<&'t Entry> {
        loop {
            if let Some(entry) = self.leaf.get(self.pos) {
                self.pos += 1;
                return Some(entry);
            }
            // The next leaf: up to the first branch with a child to the right, then leftmost.
            let mut node = loop {
                let (children, i) = self.stack.last_mut()?;
                if *i + 1 < children.len() {
                    *i += 1;
                    break &children[*i];
                }
                self.stack.pop();
            };
            loop {
                match node {
                    Node::Branch(branch) => {
                        self.stack.push((&branch.children[..], 0));
                        node = &branch.children[0];
                    }
                    Node::Leaf(entries) => {
                        self.leaf = entries;
                        self.pos = 0;
                        break;
                    }
                }
            }
        }
    }
}

/// Descending iterator (see [`Tree::iter_rev_from`]).
pub(crate) struct RevIter<'t> {
    stack: Vec<(&'t [Node], usize)>,
    leaf: &'t [Entry],
    /// Entries below this position are still to come.
    pos: usize,
}

impl<'t> Iterator for RevIter<'t> {
    type Item = &'t Entry;

    fn next(&mut self) -> Option<&'t Entry> {
        loop {
            if self.pos > 0 {
                self.pos -= 1;
                return self.leaf.get(self.pos);
            }
            let mut node = loop {
                let (children, i) = self.stack.last_mut()?;
                if *i > 0 {
                    *i -= 1;
                    break &children[*i];
                }
                self.stack.pop();
            };
            loop {
                match node {
                    Node::Branch(branch) => {
                        let last = branch.children.len() - 1;
                        self.stack.push((&branch.children[..], last));
                        node = &branch.children[last];
                    }
                    Node::Leaf(entries) => {
                        self.leaf = entries;
                        self.pos = entries.len();
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn k(i: u32) -> Vec<u8> {
        format!("{i:08}").into_bytes()
    }

    #[test]
    fn entries_hold_key_and_value_of_any_length() {
        for key_len in [0usize, 1, 127, 128, 300, 20_000] {
            let key = vec![7u8; key_len];
            let e = Entry::new(&key, b"value");
            assert_eq!(e.key(), &key[..]);
            assert_eq!(e.value(), b"value");
            assert_eq!(e.payload_len(), key_len as u64 + 5);
            assert_eq!(e.clone().into_value(), Bytes::from_static(b"value"));
        }
        let empty = Entry::new(b"", b"");
        assert_eq!((empty.key(), empty.value()), (&b""[..], &b""[..]));
    }

    #[test]
    fn a_bulk_load_has_full_leaves_and_every_operation_keeps_the_invariants() {
        let tree = Tree::from_sorted((0..10_000).map(|i| Entry::new(&k(i), b"v")));
        tree.check();
        assert_eq!(tree.len(), 10_000);
        assert_eq!(tree.iter().count(), 10_000);
        assert_eq!(tree.iter_rev_from(Bound::Unbounded).count(), 10_000);
        let mut tree2 = Tree::default();
        for i in 0..10_000 {
            tree2.insert(Entry::new(&k(i), b"v"));
        }
        tree2.check();
        assert!(tree == tree2);
        for i in (0..10_000).step_by(3) {
            assert!(tree2.remove(&k(i)).is_some());
        }
        tree2.check();
        for i in 0..10_000 {
            tree2.remove(&k(i));
        }
        tree2.check();
        assert_eq!(tree2.len(), 0);
        assert_eq!(Tree::from_sorted(std::iter::empty()).len(), 0);
    }

    #[test]
    fn a_clone_is_a_point_in_time_view() {
        let mut tree = Tree::from_sorted((0..5_000).map(|i| Entry::new(&k(i), b"old")));
        let view = tree.clone();
        for i in (0..5_000).step_by(7) {
            tree.insert(Entry::new(&k(i), b"new"));
        }
        for i in (1..5_000).step_by(11) {
            tree.remove(&k(i));
        }
        tree.insert(Entry::new(b"zzz", b"added"));
        view.check();
        tree.check();
        assert_eq!(view.len(), 5_000);
        assert!(view.iter().all(|e| e.value() == b"old"));
        assert!(view.get(b"zzz").is_none());
        assert_eq!(tree.get(&k(7)).unwrap().value(), b"new");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u8),
        Remove(u16),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u16>(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k % 2048, v)),
            3 => any::<u16>().prop_map(|k| Op::Remove(k % 2048)),
            1 => Just(Op::Snapshot),
        ]
    }

    fn bound(b: u8, key: &[u8]) -> Bound<&[u8]> {
        match b % 3 {
            0 => Bound::Unbounded,
            1 => Bound::Included(key),
            _ => Bound::Excluded(key),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_tree_is_an_ordered_map(
            initial in 0u16..3000,
            ops in proptest::collection::vec(op(), 0..1500),
            probes in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..20),
        ) {
            let key = |i: u16| format!("{:05}", u32::from(i) * 3).into_bytes();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> =
                (0..initial).map(|i| (key(i), vec![1])).collect();
            let mut tree = Tree::from_sorted(model.iter().map(|(k, v)| Entry::new(k, v)));
            let mut views = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let old = tree.insert(Entry::new(&key(k), &[v]));
                        let model_old = model.insert(key(k), vec![v]);
                        prop_assert_eq!(old.map(|e| e.value().to_vec()), model_old);
                    }
                    Op::Remove(k) => {
                        let old = tree.remove(&key(k));
                        prop_assert_eq!(old.map(|e| e.value().to_vec()), model.remove(&key(k)));
                    }
                    Op::Snapshot => views.push((tree.clone(), model.clone())),
                }
            }
            tree.check();
            let pairs = |t: &Tree| t.iter().map(|e| (e.key().to_vec(), e.value().to_vec())).collect::<Vec<_>>();
            prop_assert_eq!(pairs(&tree), model.clone().into_iter().collect::<Vec<_>>());
            for (view, at) in &views {
                view.check();
                prop_assert_eq!(pairs(view), at.clone().into_iter().collect::<Vec<_>>());
            }
            for (p, b) in probes {
                // Probe keys between, on and beyond the stored ones (stored keys are multiples of 3).
                let probe = format!("{:05}", u32::from(p) % 7000).into_bytes();
                let low = bound(b, &probe);
                let got: Vec<Vec<u8>> = tree.iter_from(low).map(|e| e.key().to_vec()).collect();
                let want: Vec<Vec<u8>> = model.range::<[u8], _>((low, Bound::Unbounded)).map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(got, want);
                let high = bound(b / 3, &probe);
                let got: Vec<Vec<u8>> = tree.iter_rev_from(high).map(|e| e.key().to_vec()).collect();
                let want: Vec<Vec<u8>> = model.range::<[u8], _>((Bound::Unbounded, high)).rev().map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(tree.get(&probe).map(|e| e.value().to_vec()), model.get(&probe).cloned());
            }
        }
    }
}
