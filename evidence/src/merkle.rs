//! RFC 6962 §2.1 / RFC 9162 §2.1 Merkle tree hashing over leaf hashes, with inclusion
//! and consistency proofs (generation and verification).
//!
//! [`Tree`] keeps every complete power-of-two subtree's hash (twice the leaf hashes in
//! memory, 64 bytes per entry), so any root, proof or prefix root costs O(log n) hashes.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (`n ≥ 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only tree of leaf hashes.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// `levels[h][i]`: hash of the complete subtree of 2^h leaves starting at leaf i·2^h.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Leaves in the tree.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// No leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leaf hash `i`.
    pub fn leaf(&self, i: u64) -> Option<Hash> {
        self.levels.first()?.get(i as usize).copied()
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let index = self.len();
        self.levels[0].push(leaf);
        let mut h = 0;
        // Complete every subtree this leaf closes.
        while self.levels[h].len().is_multiple_of(2) {
            let n = self.levels[h].len();
            let parent = node_hash(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
        index
    }

    /// Drops every leaf from `len` on (only used to undo an append that did not become
    /// durable).
    pub fn truncate(&mut self, len: u64) {
        for (h, level) in self.levels.iter_mut().enumerate() {
            level.truncate((len >> h) as usize);
        }
    }

    /// MTH of leaves `[a, b)` (`a < b ≤ len`).
    fn mth(&self, a: u64, b: u64) -> Hash {
        let n = b - a;
        if n.is_power_of_two() && a.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(a >> h) as usize];
        }
        let k = split(n);
        node_hash(&self.mth(a, a + k), &self.mth(a + k, b))
    }

    /// The root of the first `size` leaves (`size ≤ len`).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        match size {
            0 => Some(empty_root()),
            s if s <= self.len() => Some(self.mth(0, s)),
            _ => None,
        }
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.len()).expect("len is in range")
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves
    /// (RFC 6962 §2.1.1 `PATH`), leaf side first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.len() {
            return None;
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Some(out)
    }

    fn path(&self, m: u64, a: u64, b: u64, out: &mut Vec<Hash>) {
        let n = b - a;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, a, a + k, out);
            out.push(self.mth(a + k, b));
        } else {
            self.path(m - k, a + k, b, out);
            out.push(self.mth(a, a + k));
        }
    }

    /// The consistency proof from the tree of the first `old` leaves to the tree of the
    /// first `new` leaves (RFC 6962 §2.1.2 `PROOF`).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old > new || new > self.len() {
            return None;
        }
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut out);
        }
        Some(out)
    }

    fn subproof(&self, m: u64, a: u64, b: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = b - a;
        if m == n {
            if !complete {
                out.push(self.mth(a, b));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, a, a + k, complete, out);
            out.push(self.mth(a + k, b));
        } else {
            self.subproof(m - k, a + k, b, false, out);
            out.push(self.mth(a, a + k));
        }
    }
}

/// RFC 9162 §2.1.3.2: whether `proof` shows `leaf` at `index` in the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: whether `proof` shows the tree of `size2` leaves (root `root2`)
/// extends the tree of `size1` leaves (root `root1`).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> bool {
    if size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if size1 == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *root1 && sr == *root2
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_merkle::CtMerkleTree;

    fn data(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    #[test]
    fn roots_and_proofs_agree_with_ct_merkle() {
        let mut ours = Tree::new();
        let mut theirs = CtMerkleTree::<sha2::Sha256, Vec<u8>>::new();
        assert_eq!(ours.root(), empty_root());
        for i in 0..70u64 {
            ours.push(leaf_hash(&data(i)));
            theirs.push(data(i));
            let size = i + 1;
            let root = theirs.root();
            assert_eq!(
                ours.root().as_slice(),
                root.as_bytes().as_slice(),
                "size {size}"
            );
            for idx in 0..size {
                let proof = ours.inclusion_proof(idx, size).unwrap();
                let leaf = ours.leaf(idx).unwrap();
                assert!(verify_inclusion(idx, size, &leaf, &proof, &ours.root()));
                // ct-merkle's proof for the same leaf checks against our bytes.
                let tp = theirs.prove_inclusion(idx as usize);
                let flat: Vec<u8> = proof.concat();
                assert_eq!(tp.as_bytes(), flat.as_slice(), "path {idx} of {size}");
            }
            for old in 0..=size {
                let proof = ours.consistency_proof(old, size).unwrap();
                let r1 = ours.root_at(old).unwrap();
                assert!(
                    verify_consistency(old, size, &r1, &ours.root(), &proof),
                    "{old} → {size}"
                );
                if old > 0 {
                    let tp = theirs.prove_consistency(old as usize);
                    assert_eq!(tp.as_bytes(), proof.concat().as_slice(), "{old} → {size}");
                }
            }
        }
    }

    #[test]
    fn wrong_proofs_fail() {
        let mut t = Tree::new();
        for i in 0..13 {
            t.push(leaf_hash(&data(i)));
        }
        let root = t.root();
        let p = t.inclusion_proof(5, 13).unwrap();
        let leaf = t.leaf(5).unwrap();
        assert!(verify_inclusion(5, 13, &leaf, &p, &root));
        assert!(!verify_inclusion(6, 13, &leaf, &p, &root));
        assert!(!verify_inclusion(5, 13, &t.leaf(4).unwrap(), &p, &root));
        let mut bad = p.clone();
        bad[1][0] ^= 1;
        assert!(!verify_inclusion(5, 13, &leaf, &bad, &root));
        assert!(!verify_inclusion(5, 13, &leaf, &p[..p.len() - 1], &root));
        let c = t.consistency_proof(6, 13).unwrap();
        let r6 = t.root_at(6).unwrap();
        assert!(verify_consistency(6, 13, &r6, &root, &c));
        assert!(!verify_consistency(7, 13, &r6, &root, &c));
        assert!(!verify_consistency(6, 13, &root, &root, &c));
        // Truncating undoes appends exactly.
        let mut u = t.clone();
        u.push(leaf_hash(b"x"));
        u.truncate(13);
        assert_eq!(u.root(), root);
        assert_eq!(u.len(), 13);
    }
}
