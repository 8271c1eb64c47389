//! The circuits: `chunk` (a rollup transfer batch) and `batch` (aggregation of chunk proofs).

pub mod batch;
pub mod chunk;
