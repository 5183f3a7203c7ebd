//! Training jobs (issue 14), being built piece by piece: today the model definition
//! ([`graph`]: the Engine's node graph and our plain form, validated into one spec) and the
//! datasets ([`dataset`]); the executor, its store and the training plugins come later.

pub mod dataset;
pub mod graph;
