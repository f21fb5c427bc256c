//! Which of an app's access rules a path can match, found in one pass over the path.
//!
//! Most `resources` patterns start with literal text (`^/api/`, `^/admin`, `^/r/[0-9]+$`), and
//! a rule whose every pattern does can only match a path that starts with one of those texts.
//! The index keeps those starts in a byte trie: walking the path once marks every rule whose
//! start it passes, beside the rules that any path may match (no `resources`, or a pattern
//! without a literal start). The access decision then checks only the marked rules, in file
//! order, with their full criteria: the index narrows, it never decides.

use super::rules::Rule;

/// Rules the index can mark; an app with more is scanned rule by rule.
pub const MAX_INDEXED: usize = 256;

const WORDS: usize = MAX_INDEXED / 64;

/// A set of rule positions, on the stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleSet([u64; WORDS]);

impl RuleSet {
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn union(&mut self, other: &RuleSet) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    /// Whether rule `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        i < MAX_INDEXED && self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// The positions in the set, ascending (file order).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + b)
            })
        })
    }
}

/// One trie node: its children by byte (sorted) and the rules whose start ends here.
#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(u8, u32)>,
    ends: RuleSet,
}

/// The trie of the rules' literal starts, and the rules every path is a candidate for.
#[derive(Debug, Clone, Default)]
pub struct PathIndex {
    nodes: Vec<Node>,
    always: RuleSet,
}

impl PathIndex {
    /// The index of `rules`; `None` when there are more than [`MAX_INDEXED`].
    pub fn new(rules: &[Rule]) -> Option<PathIndex> {
        if rules.len() > MAX_INDEXED {
            return None;
        }
        let mut index = PathIndex {
            nodes: vec![Node::default()],
            always: RuleSet::default(),
        };
        for (i, rule) in rules.iter().enumerate() {
            match rule.resources.as_ref().and_then(|r| r.required_starts()) {
                Some(starts) => starts.iter().for_each(|s| index.add(s.as_bytes(), i)),
                None => index.always.insert(i),
            }
        }
        Some(index)
    }

    fn add(&mut self, start: &[u8], rule: usize) {
        if start.is_empty() {
            // `^` alone: every path starts with it.
            self.always.insert(rule);
            return;
        }
        let mut at = 0;
        for &b in start {
            at = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(k) => self.nodes[at].children[k].1 as usize,
                Err(k) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    // Fewer than 2^32 nodes: at most 256 rules of config-sized patterns.
                    let id = u32::try_from(next).unwrap_or(u32::MAX);
                    self.nodes[at].children.insert(k, (b, id));
                    next
                }
            };
        }
        self.nodes[at].ends.insert(rule);
    }

    /// The rules `path` can match: those without a literal start, and those whose start
    /// `path` begins with. One walk over `path`, no allocation.
    pub fn candidates(&self, path: &str) -> RuleSet {
        let mut out = self.always;
        let mut at = 0;
        for &b in path.as_bytes() {
            let Some(node) = self.nodes.get(at) else {
                break;
            };
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(k) => at = node.children[k].1 as usize,
                Err(_) => return out,
            }
            if let Some(n) = self.nodes.get(at) {
                out.union(&n.ends);
            }
        }
        out
    }
}
