//! The Merkle tree over the log, as Certificate Transparency builds it (RFC 9162 §2.1).
//!
//! Leaf `i` (0-based) is the event at position `i + 1`; its leaf input is the event as the hash chain
//! encodes it (`projections::chain::link_bytes`). Hashes: `leaf = SHA-256(0x00 || input)`,
//! `node = SHA-256(0x01 || left || right)`; the tree hash of `n` leaves splits at the largest power of
//! two below `n`.
//!
//! Nothing here reads the database. Proofs are built from a *subtree source*: the hash of the perfect
//! subtree at `(level, index)`, which covers leaves `index * 2^level .. (index + 1) * 2^level`. Any tree
//! hash, inclusion proof or consistency proof needs O(log n) of them ([`nodes_for_inclusion`],
//! [`nodes_for_consistency`]), so the shell fetches exactly those and hands them in.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The key of a perfect subtree: `(level, index)`; level 0 is a leaf.
pub type NodeKey = (u8, u64);

/// A perfect subtree's key and hash.
pub type Node = (u8, u64, Hash);

/// A subtree a computation needed and the source did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Merkle tree has no node at level {0}, index {1}")]
pub struct MissingNode(pub u8, pub u64);

/// A request for a proof the tree cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < from <= to (got {from} and {to})")]
    BadRange { from: u64, to: u64 },
    #[error(transparent)]
    Missing(#[from] MissingNode),
}

/// The hash of a leaf with input `input`.
pub fn leaf_hash(input: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(input);
    h.finalize().into()
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The tree hash of no leaves: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The tree hash of leaves `start..end`, where the range is one the RFC's recursion produces (`start`
/// a multiple of the largest power of two not above `end - start`).
fn range_hash(
    start: u64,
    end: u64,
    get: &mut impl FnMut(u8, u64) -> Option<Hash>,
) -> Result<Hash, MissingNode> {
    let len = end - start;
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros() as u8;
        let index = start >> level;
        return get(level, index).ok_or(MissingNode(level, index));
    }
    let k = split(len);
    let left = range_hash(start, start + k, get)?;
    let right = range_hash(start + k, end, get)?;
    Ok(node_hash(&left, &right))
}

/// The tree hash of the first `size` leaves.
pub fn root(size: u64, get: &mut impl FnMut(u8, u64) -> Option<Hash>) -> Result<Hash, MissingNode> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, get)
}

/// RFC 9162 §2.1.3.1 PATH(m, D[start:end]), siblings from the leaf up.
fn path(
    m: u64,
    start: u64,
    end: u64,
    get: &mut impl FnMut(u8, u64) -> Option<Hash>,
    out: &mut Vec<Hash>,
) -> Result<(), MissingNode> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(m, start, start + k, get, out)?;
        out.push(range_hash(start + k, end, get)?);
    } else {
        path(m - k, start + k, end, get, out)?;
        out.push(range_hash(start, start + k, get)?);
    }
    Ok(())
}

/// The inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    get: &mut impl FnMut(u8, u64) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::LeafOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index, 0, size, get, &mut out)?;
    Ok(out)
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[start:end], b).
fn subproof(
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    get: &mut impl FnMut(u8, u64) -> Option<Hash>,
    out: &mut Vec<Hash>,
) -> Result<(), MissingNode> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(range_hash(start, end, get)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, start + k, whole, get, out)?;
        out.push(range_hash(start + k, end, get)?);
    } else {
        subproof(m - k, start + k, end, false, get, out)?;
        out.push(range_hash(start, start + k, get)?);
    }
    Ok(())
}

/// The consistency proof that the tree of `to` leaves extends the tree of its first `from` leaves.
pub fn consistency_proof(
    from: u64,
    to: u64,
    get: &mut impl FnMut(u8, u64) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > to {
        return Err(ProofError::BadRange { from, to });
    }
    let mut out = Vec::new();
    subproof(from, 0, to, true, get, &mut out)?;
    Ok(out)
}

/// Runs `compute` against a source that has every node, recording which it asked for.
fn recorded(compute: impl FnOnce(&mut dyn FnMut(u8, u64) -> Option<Hash>)) -> Vec<NodeKey> {
    let mut keys = Vec::new();
    compute(&mut |level, index| {
        keys.push((level, index));
        Some([0; 32])
    });
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The subtrees [`root`] reads for `size` leaves.
pub fn nodes_for_root(size: u64) -> Vec<NodeKey> {
    recorded(|get| {
        let _ = root(size, &mut |l, i| get(l, i));
    })
}

/// The subtrees [`inclusion_proof`] and [`root`] read for leaf `index` in a tree of `size` leaves.
pub fn nodes_for_inclusion(index: u64, size: u64) -> Vec<NodeKey> {
    recorded(|get| {
        let _ = inclusion_proof(index, size, &mut |l, i| get(l, i));
        let _ = root(size, &mut |l, i| get(l, i));
    })
}

/// The subtrees [`consistency_proof`] reads between trees of `from` and `to` leaves.
pub fn nodes_for_consistency(from: u64, to: u64) -> Vec<NodeKey> {
    recorded(|get| {
        let _ = consistency_proof(from, to, &mut |l, i| get(l, i));
    })
}

/// A source over fetched nodes.
pub fn source(nodes: &HashMap<NodeKey, Hash>) -> impl FnMut(u8, u64) -> Option<Hash> + '_ {
    |level, index| nodes.get(&(level, index)).copied()
}

/// RFC 9162 §2.1.3.2: does `proof` show leaf `index` with hash `leaf` in the tree of `size` leaves
/// whose root is `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `to` leaves with root `to_root` extends the
/// tree of `from` leaves with root `from_root`? Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == from_root && &sr == to_root && s == 0
}

/// The right edge of a growing tree: the perfect subtrees that make up its first `size` leaves, one per
/// set bit of `size`, largest first. Appending a leaf completes the subtrees it closes; those are the
/// new nodes to store, so growing the tree costs work proportional to the leaves added.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    edge: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The keys of the subtrees a frontier of `size` leaves holds, largest first.
    pub fn keys(size: u64) -> Vec<NodeKey> {
        (0..64u8)
            .rev()
            .filter(|l| (size >> l) & 1 == 1)
            .map(|l| (l, (size >> l) - 1))
            .collect()
    }

    /// The frontier of `size` leaves from its subtrees (as [`Frontier::keys`] names them).
    pub fn from_nodes(size: u64, get: &mut impl FnMut(u8, u64) -> Option<Hash>) -> Result<Self, MissingNode> {
        let edge = Self::keys(size)
            .into_iter()
            .map(|(l, i)| get(l, i).map(|h| (l, h)).ok_or(MissingNode(l, i)))
            .collect::<Result<_, _>>()?;
        Ok(Frontier { size, edge })
    }

    /// How many leaves the tree holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns every perfect subtree completed by it, the leaf itself first.
    pub fn push(&mut self, leaf: Hash) -> Vec<Node> {
        let index = self.size;
        let mut made = vec![(0, index, leaf)];
        let (mut level, mut hash) = (0u8, leaf);
        while let Some(&(l, left)) = self.edge.last() {
            if l != level {
                break;
            }
            self.edge.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            made.push((level, index >> level, hash));
        }
        self.edge.push((level, hash));
        self.size += 1;
        made
    }

    /// The tree hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.edge.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9162's MTH, straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(inputs: &[Vec<u8>]) -> Vec<Hash> {
        inputs.iter().map(|i| leaf_hash(i)).collect()
    }

    /// Every node a tree of these leaves has, grown through the frontier as the checkpointer grows it.
    fn grown(leaves: &[Hash]) -> (HashMap<NodeKey, Hash>, Frontier) {
        let mut f = Frontier::default();
        let mut nodes = HashMap::new();
        for l in leaves {
            for (level, index, hash) in f.push(*l) {
                nodes.insert((level, index), hash);
            }
        }
        (nodes, f)
    }

    fn flip(h: &Hash, bit: usize) -> Hash {
        let mut h = *h;
        h[bit / 8 % 32] ^= 1 << (bit % 8);
        h
    }

    #[test]
    fn known_answers_from_the_definition() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let l: Vec<Hash> = leaves(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let (nodes, f) = grown(&l);
        let expected = node_hash(&node_hash(&l[0], &l[1]), &l[2]);
        assert_eq!(f.root(), expected);
        assert_eq!(root(3, &mut source(&nodes)).unwrap(), expected);
        assert_eq!(
            inclusion_proof(2, 3, &mut source(&nodes)).unwrap(),
            vec![node_hash(&l[0], &l[1])]
        );
        assert_eq!(consistency_proof(2, 3, &mut source(&nodes)).unwrap(), vec![l[2]]);
    }

    #[test]
    fn a_missing_subtree_is_named_not_guessed() {
        let (mut nodes, _) = grown(&leaves(&[vec![1], vec![2], vec![3]]));
        nodes.remove(&(1, 0));
        assert_eq!(root(3, &mut source(&nodes)), Err(MissingNode(1, 0)));
        assert_eq!(
            inclusion_proof(3, 3, &mut source(&nodes)),
            Err(ProofError::LeafOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            consistency_proof(0, 3, &mut source(&nodes)),
            Err(ProofError::BadRange { from: 0, to: 3 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn every_root_matches_the_definition_and_reads_log_n_nodes(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..130),
        ) {
            let l = leaves(&inputs);
            let (nodes, f) = grown(&l);
            for size in 0..=l.len() {
                let size64 = size as u64;
                let r = root(size64, &mut source(&nodes)).unwrap();
                prop_assert_eq!(r, mth(&l[..size]));
                prop_assert!(nodes_for_root(size64).len() <= 64);
                // A frontier rebuilt from stored nodes continues exactly like the one that grew.
                let mut again = Frontier::from_nodes(size64, &mut source(&nodes)).unwrap();
                prop_assert_eq!(again.root(), r);
                if size < l.len() {
                    again.push(l[size]);
                    prop_assert_eq!(again.root(), mth(&l[..=size]));
                }
            }
            prop_assert_eq!(f.root(), mth(&l));
        }

        #[test]
        fn every_inclusion_proof_verifies_and_any_change_fails(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..70),
            bit in 0usize..256,
            pick in any::<prop::sample::Index>(),
        ) {
            let l = leaves(&inputs);
            let (nodes, _) = grown(&l);
            for size in 1..=l.len() as u64 {
                let r = root(size, &mut source(&nodes)).unwrap();
                for index in 0..size {
                    // Only the nodes it names are needed.
                    let needed: HashMap<NodeKey, Hash> = nodes_for_inclusion(index, size)
                        .into_iter()
                        .map(|k| (k, nodes[&k]))
                        .collect();
                    let proof = inclusion_proof(index, size, &mut source(&needed)).unwrap();
                    let leaf = l[index as usize];
                    prop_assert!(verify_inclusion(index, size, &leaf, &proof, &r));
                    // An altered leaf, index, sibling or root fails. (The size is not bound by the path alone: it
                    // is signed with the root in the checkpoint.)
                    prop_assert!(!verify_inclusion(index, size, &flip(&leaf, bit), &proof, &r));
                    prop_assert!(!verify_inclusion(index, size, &leaf, &proof, &flip(&r, bit)));
                    if size > 1 {
                        let other = (index + 1 + pick.index(size as usize - 1) as u64) % size;
                        prop_assert!(!verify_inclusion(other, size, &leaf, &proof, &r)
                            || l[other as usize] == leaf);
                    }
                    if !proof.is_empty() {
                        let mut bad = proof.clone();
                        let i = pick.index(bad.len());
                        bad[i] = flip(&bad[i], bit);
                        prop_assert!(!verify_inclusion(index, size, &leaf, &bad, &r));
                        prop_assert!(!verify_inclusion(index, size, &leaf, &proof[1..], &r));
                    }
                }
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_any_change_fails(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..50),
            bit in 0usize..256,
            pick in any::<prop::sample::Index>(),
        ) {
            let l = leaves(&inputs);
            let (nodes, _) = grown(&l);
            let n = l.len() as u64;
            for to in 1..=n {
                let to_root = root(to, &mut source(&nodes)).unwrap();
                for from in 1..=to {
                    let from_root = root(from, &mut source(&nodes)).unwrap();
                    let needed: HashMap<NodeKey, Hash> = nodes_for_consistency(from, to)
                        .into_iter()
                        .map(|k| (k, nodes[&k]))
                        .collect();
                    let proof = consistency_proof(from, to, &mut source(&needed)).unwrap();
                    prop_assert!(verify_consistency(from, to, &from_root, &to_root, &proof));
                    prop_assert!(!verify_consistency(from, to, &flip(&from_root, bit), &to_root, &proof));
                    prop_assert!(!verify_consistency(from, to, &from_root, &flip(&to_root, bit), &proof));
                    if !proof.is_empty() {
                        let mut bad = proof.clone();
                        let i = pick.index(bad.len());
                        bad[i] = flip(&bad[i], bit);
                        prop_assert!(!verify_consistency(from, to, &from_root, &to_root, &bad));
                    }
                }
            }
        }

        #[test]
        fn an_altered_leaf_breaks_consistency_with_the_earlier_tree(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 2..60),
            at in any::<prop::sample::Index>(),
            grow in 1usize..20,
        ) {
            // History rewritten at `at` and then extended: the later tree is not consistent with the
            // earlier one, whatever proof the rewritten tree gives.
            let l = leaves(&inputs);
            let from = l.len() as u64;
            let (nodes, _) = grown(&l);
            let from_root = root(from, &mut source(&nodes)).unwrap();
            let mut rewritten = l.clone();
            let i = at.index(l.len());
            rewritten[i] = leaf_hash(&[inputs[i].clone(), vec![0xff]].concat());
            rewritten.extend((0..grow).map(|g| leaf_hash(&[g as u8])));
            let (forged, _) = grown(&rewritten);
            let to = rewritten.len() as u64;
            let to_root = root(to, &mut source(&forged)).unwrap();
            let proof = consistency_proof(from, to, &mut source(&forged)).unwrap();
            prop_assert!(!verify_consistency(from, to, &from_root, &to_root, &proof));
        }
    }
}
