//! Account state, transfer application and chunk witness generation (outside the circuit).

use std::collections::BTreeMap;

use halo2curves::bn256::Fr;
use serde::{Deserialize, Serialize};

use super::hash::{leaf_hash, poseidon};
use super::smt::{root_from_path, SparseMerkleTree};
use crate::wire::{
    AccountWitness, ChunkConfig, ChunkTaskData, FrHex, Transfer, TxWitness, TASK_DATA_VERSION,
};

/// Why a chunk cannot be built or is not internally consistent. Every variant names the transaction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("invalid chunk config: {0}")]
    Config(String),
    #[error("{count} transfers exceed max_txs {max}")]
    TooManyTransfers { count: usize, max: usize },
    #[error("{transfers} transfers but {witnesses} witness entries")]
    WitnessCount { transfers: usize, witnesses: usize },
    #[error("tx {tx}: account {index} is outside the tree of depth {depth}")]
    IndexOutOfRange { tx: usize, index: u64, depth: usize },
    #[error("tx {tx}: account {index} does not exist")]
    NoSuchAccount { tx: usize, index: u64 },
    #[error("tx {tx}: nonce {got} does not match the sender's nonce {expected}")]
    WrongNonce { tx: usize, expected: u64, got: u64 },
    #[error("tx {tx}: amount {amount} exceeds the sender's balance {balance}")]
    Overdrawn {
        tx: usize,
        balance: u64,
        amount: u64,
    },
    #[error("tx {tx}: receiver balance {balance} + {amount} overflows 64 bits")]
    Overflow {
        tx: usize,
        balance: u64,
        amount: u64,
    },
    #[error("tx {tx}: sender nonce would overflow")]
    NonceOverflow { tx: usize },
    #[error("tx {tx}: {who} path has {got} siblings, the tree depth is {depth}")]
    PathLength {
        tx: usize,
        who: &'static str,
        got: usize,
        depth: usize,
    },
    #[error("tx {tx}: {who} Merkle path does not lead to the current root")]
    BadPath { tx: usize, who: &'static str },
    #[error("transfers lead to root {computed}, the task claims new root {claimed}")]
    WrongNewRoot { computed: FrHex, claimed: FrHex },
}

/// Both accounts of a transfer index the tree.
fn check_indices(tx: usize, t: &Transfer, depth: usize) -> Result<(), ChunkError> {
    for index in [t.from, t.to] {
        if index >> depth != 0 {
            return Err(ChunkError::IndexOutOfRange { tx, index, depth });
        }
    }
    Ok(())
}

/// The sender's side of a transfer, as the circuit enforces it: the nonce matches, the balance
/// covers the amount. Returns the sender's new (balance, nonce).
fn debit(tx: usize, t: &Transfer, balance: u64, nonce: u64) -> Result<(u64, u64), ChunkError> {
    if t.nonce != nonce {
        return Err(ChunkError::WrongNonce {
            tx,
            expected: nonce,
            got: t.nonce,
        });
    }
    let new_balance = balance.checked_sub(t.amount).ok_or(ChunkError::Overdrawn {
        tx,
        balance,
        amount: t.amount,
    })?;
    let new_nonce = nonce
        .checked_add(1)
        .ok_or(ChunkError::NonceOverflow { tx })?;
    Ok((new_balance, new_nonce))
}

/// The receiver's side: the balance must not overflow 64 bits. Returns the new balance.
fn credit(tx: usize, t: &Transfer, balance: u64) -> Result<u64, ChunkError> {
    balance.checked_add(t.amount).ok_or(ChunkError::Overflow {
        tx,
        balance,
        amount: t.amount,
    })
}

/// One account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub owner: FrHex,
    pub balance: u64,
    pub nonce: u64,
}

impl Account {
    fn leaf(&self) -> Fr {
        leaf_hash(self.owner.0, self.balance, self.nonce)
    }
}

/// Check that a chunk configuration is one the circuit supports.
pub fn check_config(config: &ChunkConfig) -> Result<(), ChunkError> {
    if !(1..=32).contains(&config.tree_depth) {
        return Err(ChunkError::Config(format!(
            "tree_depth {} is outside 1..=32",
            config.tree_depth
        )));
    }
    if !(1..=256).contains(&config.max_txs) {
        return Err(ChunkError::Config(format!(
            "max_txs {} is outside 1..=256",
            config.max_txs
        )));
    }
    if !(9..=26).contains(&config.k) {
        return Err(ChunkError::Config(format!(
            "k {} is outside 9..=26",
            config.k
        )));
    }
    Ok(())
}

/// The rollup's account state.
#[derive(Clone, Debug)]
pub struct RollupState {
    tree: SparseMerkleTree,
    accounts: BTreeMap<u64, Account>,
}

impl RollupState {
    /// An empty state with a tree of `depth` levels.
    pub fn new(depth: usize) -> Result<Self, ChunkError> {
        if !(1..=32).contains(&depth) {
            return Err(ChunkError::Config(format!(
                "tree_depth {depth} is outside 1..=32"
            )));
        }
        Ok(Self {
            tree: SparseMerkleTree::new(depth),
            accounts: BTreeMap::new(),
        })
    }

    /// A development genesis: accounts `0..n` with `balance` each and owners derived from their index.
    pub fn genesis(depth: usize, n: u64, balance: u64) -> Result<Self, ChunkError> {
        let mut state = Self::new(depth)?;
        for i in 0..n {
            let owner = FrHex(poseidon(&[Fr::from(0x6f776e6572u64), Fr::from(i)]));
            state.insert(
                i,
                Account {
                    owner,
                    balance,
                    nonce: 0,
                },
            )?;
        }
        Ok(state)
    }

    /// Creates or replaces an account.
    pub fn insert(&mut self, index: u64, account: Account) -> Result<(), ChunkError> {
        let depth = self.tree.depth();
        if index >> depth != 0 {
            return Err(ChunkError::IndexOutOfRange {
                tx: 0,
                index,
                depth,
            });
        }
        self.tree.set(index, account.leaf());
        self.accounts.insert(index, account);
        Ok(())
    }

    pub fn root(&self) -> Fr {
        self.tree.root()
    }

    pub fn depth(&self) -> usize {
        self.tree.depth()
    }

    pub fn account(&self, index: u64) -> Option<&Account> {
        self.accounts.get(&index)
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&u64, &Account)> {
        self.accounts.iter()
    }

    /// Applies `transfers` and returns the chunk task payload proving it. On error the state is
    /// unchanged.
    pub fn apply_chunk(
        &mut self,
        config: ChunkConfig,
        transfers: &[Transfer],
    ) -> Result<ChunkTaskData, ChunkError> {
        check_config(&config)?;
        if config.tree_depth != self.depth() {
            return Err(ChunkError::Config(format!(
                "chunk tree_depth {} differs from the state's depth {}",
                config.tree_depth,
                self.depth()
            )));
        }
        if transfers.len() > config.max_txs {
            return Err(ChunkError::TooManyTransfers {
                count: transfers.len(),
                max: config.max_txs,
            });
        }
        let mut next = self.clone();
        let old_root = next.root();
        let mut witness = Vec::with_capacity(transfers.len());
        for (tx, t) in transfers.iter().enumerate() {
            witness.push(next.apply_transfer(tx, t)?);
        }
        let data = ChunkTaskData {
            version: TASK_DATA_VERSION,
            config,
            old_root: old_root.into(),
            new_root: next.root().into(),
            transfers: transfers.to_vec(),
            witness,
        };
        *self = next;
        Ok(data)
    }

    fn witness_of(&self, index: u64, account: &Account) -> AccountWitness {
        AccountWitness {
            owner: account.owner,
            balance: account.balance,
            nonce: account.nonce,
            siblings: self.tree.siblings(index).into_iter().map(FrHex).collect(),
        }
    }

    fn apply_transfer(&mut self, tx: usize, t: &Transfer) -> Result<TxWitness, ChunkError> {
        check_indices(tx, t, self.depth())?;
        let sender = *self
            .accounts
            .get(&t.from)
            .ok_or(ChunkError::NoSuchAccount { tx, index: t.from })?;
        if !self.accounts.contains_key(&t.to) {
            return Err(ChunkError::NoSuchAccount { tx, index: t.to });
        }
        let (balance, nonce) = debit(tx, t, sender.balance, sender.nonce)?;
        let sender_w = self.witness_of(t.from, &sender);
        let updated = Account {
            balance,
            nonce,
            ..sender
        };
        self.tree.set(t.from, updated.leaf());
        self.accounts.insert(t.from, updated);

        // Read after the debit: a transfer to oneself credits the debited account.
        let receiver = self.accounts[&t.to];
        let balance = credit(tx, t, receiver.balance)?;
        let receiver_w = self.witness_of(t.to, &receiver);
        let credited = Account {
            balance,
            ..receiver
        };
        self.tree.set(t.to, credited.leaf());
        self.accounts.insert(t.to, credited);
        Ok(TxWitness {
            sender: sender_w,
            receiver: receiver_w,
        })
    }
}

/// Checks that a payload has the shape its config promises (the circuit indexes by it).
pub fn check_shape(data: &ChunkTaskData) -> Result<(), ChunkError> {
    check_config(&data.config)?;
    let c = &data.config;
    if data.transfers.len() > c.max_txs {
        return Err(ChunkError::TooManyTransfers {
            count: data.transfers.len(),
            max: c.max_txs,
        });
    }
    if data.transfers.len() != data.witness.len() {
        return Err(ChunkError::WitnessCount {
            transfers: data.transfers.len(),
            witnesses: data.witness.len(),
        });
    }
    for (tx, w) in data.witness.iter().enumerate() {
        for (who, acc) in [("sender", &w.sender), ("receiver", &w.receiver)] {
            if acc.siblings.len() != c.tree_depth {
                return Err(ChunkError::PathLength {
                    tx,
                    who,
                    got: acc.siblings.len(),
                    depth: c.tree_depth,
                });
            }
        }
    }
    Ok(())
}

/// Checks a chunk payload natively exactly as the circuit will: paths, nonces, balances and the
/// claimed new root. A prover runs this first so that a bad task fails with a reason instead of a
/// proof that does not verify.
pub fn check_chunk(data: &ChunkTaskData) -> Result<(), ChunkError> {
    check_shape(data)?;
    let depth = data.config.tree_depth;
    let mut root = data.old_root.0;
    for (tx, (t, w)) in data.transfers.iter().zip(&data.witness).enumerate() {
        check_indices(tx, t, depth)?;
        let (s, r) = (&w.sender, &w.receiver);
        let s_sib: Vec<Fr> = s.siblings.iter().map(|x| x.0).collect();
        if root_from_path(leaf_hash(s.owner.0, s.balance, s.nonce), t.from, &s_sib) != root {
            return Err(ChunkError::BadPath { tx, who: "sender" });
        }
        let (balance, nonce) = debit(tx, t, s.balance, s.nonce)?;
        let mid = root_from_path(leaf_hash(s.owner.0, balance, nonce), t.from, &s_sib);
        let r_sib: Vec<Fr> = r.siblings.iter().map(|x| x.0).collect();
        if root_from_path(leaf_hash(r.owner.0, r.balance, r.nonce), t.to, &r_sib) != mid {
            return Err(ChunkError::BadPath {
                tx,
                who: "receiver",
            });
        }
        root = root_from_path(
            leaf_hash(r.owner.0, credit(tx, t, r.balance)?, r.nonce),
            t.to,
            &r_sib,
        );
    }
    if root != data.new_root.0 {
        return Err(ChunkError::WrongNewRoot {
            computed: root.into(),
            claimed: data.new_root,
        });
    }
    Ok(())
}
