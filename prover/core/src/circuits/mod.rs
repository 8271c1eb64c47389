//! The circuits: `chunk` (a rollup transfer batch), `batch` (aggregation of chunk proofs) and
//! `bundle` (aggregation of batch proofs, the proof settled on L1).

pub mod batch;
pub mod bundle;
pub mod chunk;
