//! Event sourcing on logbook: aggregates rebuilt from their streams and saved with expected
//! versions ([`aggregate`]), snapshots that shorten the rebuild ([`snapshot`]), and upcasters
//! that read old event shapes as new ones ([`upcast`]).

pub mod aggregate;
pub mod snapshot;
pub mod upcast;
