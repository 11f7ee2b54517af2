//! The differential engine: from an OpTree and a batch description to the SQL of the query's delta.

pub mod context;
pub mod rules;

pub use context::{CacheContext, CdcContext, DiffContext, OptimizationContext, SourceCdc};
pub use rules::delta_query;

#[cfg(test)]
mod tests;
