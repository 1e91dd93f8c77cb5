//! `mcp-manager`'s one-shot commands.

pub mod doctor;
pub mod generate;
pub mod import;
