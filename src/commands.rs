//! `mcp-manager`'s one-shot commands.

pub mod doctor;
pub mod generate;
pub mod host;
pub mod import;
pub mod logs;
pub mod status;
