//! Failover: the attempt loop ([`engine`]) and the decision it consults ([`policy`]).

pub mod engine;
pub mod outcome;
pub mod policy;
pub mod probe;

pub use outcome::{ClientRequest, Outcome, Served};
pub use policy::{decide, Decision};
