//! A sparse Merkle tree of fixed depth over Poseidon; an absent leaf is 0.

use std::collections::HashMap;

use halo2curves::bn256::Fr;

use super::hash::node_hash;

/// Sparse Merkle tree storing only non-default nodes.
#[derive(Clone, Debug)]
pub struct SparseMerkleTree {
    depth: usize,
    /// `levels[l]` maps an index at level `l` (0 = leaves) to its node value.
    levels: Vec<HashMap<u64, Fr>>,
    /// `empty[l]` is the value of an all-empty subtree of height `l`.
    empty: Vec<Fr>,
}

impl SparseMerkleTree {
    /// An empty tree of `depth` levels (2^depth leaves). `depth` must be in 1..=63.
    pub fn new(depth: usize) -> Self {
        assert!(
            (1..=63).contains(&depth),
            "tree depth {depth} out of range 1..=63"
        );
        let mut empty = Vec::with_capacity(depth + 1);
        empty.push(Fr::zero());
        for l in 0..depth {
            empty.push(node_hash(empty[l], empty[l]));
        }
        Self {
            depth,
            levels: vec![HashMap::new(); depth + 1],
            empty,
        }
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    fn node(&self, level: usize, index: u64) -> Fr {
        self.levels[level]
            .get(&index)
            .copied()
            .unwrap_or(self.empty[level])
    }

    /// The root.
    pub fn root(&self) -> Fr {
        self.node(self.depth, 0)
    }

    /// The leaf value at `index`.
    pub fn leaf(&self, index: u64) -> Fr {
        self.node(0, index)
    }

    /// Siblings of the path from leaf `index` to the root, leaf level first.
    pub fn siblings(&self, index: u64) -> Vec<Fr> {
        (0..self.depth)
            .map(|l| self.node(l, (index >> l) ^ 1))
            .collect()
    }

    /// Sets leaf `index` and recomputes its path. `index` must be below 2^depth.
    pub fn set(&mut self, index: u64, leaf: Fr) {
        debug_assert!(index >> self.depth == 0);
        self.levels[0].insert(index, leaf);
        let mut cur = leaf;
        for l in 0..self.depth {
            let idx = index >> l;
            let sib = self.node(l, idx ^ 1);
            cur = if idx & 1 == 0 {
                node_hash(cur, sib)
            } else {
                node_hash(sib, cur)
            };
            self.levels[l + 1].insert(idx >> 1, cur);
        }
    }
}

/// The root implied by a leaf, its index and its siblings (leaf level first).
pub fn root_from_path(leaf: Fr, index: u64, siblings: &[Fr]) -> Fr {
    siblings.iter().enumerate().fold(leaf, |cur, (l, sib)| {
        if (index >> l) & 1 == 0 {
            node_hash(cur, *sib)
        } else {
            node_hash(*sib, cur)
        }
    })
}
