//! The csvflow engine.
pub use cel_parser;
