//! The pair-merging loop shared by both tokenizer families.
//!
//! Byte-level BPE (merge the adjacent pair with the lowest merge rank) and SentencePiece-BPE
//! (merge the adjacent pair whose concatenation has the highest vocabulary score) are the same
//! algorithm with a different priority. Symbols are byte ranges of one working string kept in
//! a linked list; candidate merges sit in a heap and are discarded when either side changed
//! since they were pushed. That keeps long inputs (SentencePiece sees the whole prompt as one
//! word) at O(n log n) instead of the quadratic rescan.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Decides whether two adjacent pieces may merge, and how urgently (lower merges first).
pub(crate) trait MergePriority {
    fn priority(&self, left: &str, right: &str) -> Option<f64>;
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Candidate {
    priority: f64,
    left: usize,
    right: usize,
    /// Combined length when pushed; a mismatch on pop means a side changed.
    len: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// The heap is a max-heap: the lowest priority, then the leftmost pair, must compare greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .total_cmp(&self.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Splits `text` into its initial pieces (one per `char`) and merges them by `rules`.
/// Returns the byte ranges of the final pieces, in order.
pub(crate) fn merge_pieces(text: &str, rules: &impl MergePriority) -> Vec<std::ops::Range<usize>> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, ch) in text.char_indices() {
        let index = symbols.len();
        symbols.push(Symbol {
            start,
            len: ch.len_utf8(),
            prev: index.checked_sub(1),
            next: None,
        });
        if index > 0 {
            symbols[index - 1].next = Some(index);
        }
    }
    let slice = |s: &Symbol| &text[s.start..s.start + s.len];
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Candidate>, symbols: &[Symbol], left: usize, right: usize| {
        let (l, r) = (&symbols[left], &symbols[right]);
        if let Some(priority) = rules.priority(slice(l), slice(r)) {
            heap.push(Candidate {
                priority,
                left,
                right,
                len: l.len + r.len,
            });
        }
    };
    for i in 1..symbols.len() {
        push(&mut heap, &symbols, i - 1, i);
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        if l.len == 0 || r.len == 0 || l.next != Some(c.right) || l.len + r.len != c.len {
            continue;
        }
        symbols[c.left].len += r.len;
        symbols[c.left].next = r.next;
        symbols[c.right].len = 0;
        if let Some(next) = r.next {
            symbols[next].prev = Some(c.left);
            push(&mut heap, &symbols, c.left, next);
        }
        if let Some(prev) = l.prev {
            push(&mut heap, &symbols, prev, c.left);
        }
    }
    let mut out = Vec::new();
    let mut cursor = if symbols.is_empty() { None } else { Some(0) };
    while let Some(i) = cursor {
        let s = symbols[i];
        out.push(s.start..s.start + s.len);
        cursor = s.next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Ranks(HashMap<(&'static str, &'static str), f64>);
    impl MergePriority for Ranks {
        fn priority(&self, left: &str, right: &str) -> Option<f64> {
            self.0
                .iter()
                .find(|((l, r), _)| *l == left && *r == right)
                .map(|(_, p)| *p)
        }
    }

    fn pieces<'a>(text: &'a str, rules: &Ranks) -> Vec<&'a str> {
        merge_pieces(text, rules)
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    #[test]
    fn lowest_priority_merges_first() {
        let rules = Ranks(HashMap::from([
            (("a", "b"), 1.0),
            (("b", "c"), 0.0),
            (("a", "bc"), 2.0),
        ]));
        assert_eq!(pieces("abc", &rules), vec!["abc"]);
        let rules = Ranks(HashMap::from([(("a", "b"), 0.0), (("b", "c"), 1.0)]));
        assert_eq!(pieces("abc", &rules), vec!["ab", "c"]);
    }

    #[test]
    fn ties_merge_leftmost_first() {
        let rules = Ranks(HashMap::from([(("a", "a"), 0.0)]));
        assert_eq!(pieces("aaa", &rules), vec!["aa", "a"]);
    }

    #[test]
    fn multibyte_characters_are_single_initial_pieces() {
        let rules = Ranks(HashMap::new());
        assert_eq!(pieces("héé", &rules), vec!["h", "é", "é"]);
        assert!(pieces("", &rules).is_empty());
    }
}
