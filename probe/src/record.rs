//! The exported flow record (defined in `tidegate-common` so the collector shares it).

pub use tidegate_wire::record::*;
