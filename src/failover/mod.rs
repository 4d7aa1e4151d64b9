//! Failover: the attempt loop ([`engine`]) and the decision it consults ([`policy`]).

pub mod engine;
pub mod policy;
pub mod probe;

pub use engine::{ClientRequest, Gateway, Outcome, Served};
pub use policy::{decide, Decision};
