//! The full-screen app: state and pure transitions (`app`), one module per popup (`popup`),
//! rendering (`view`), the keymap, themes, auto-refresh pacing, and the runtime at the edge
//! that does the I/O (`runtime`).

pub mod app;
pub mod keymap;
mod launch;
pub mod osc52;
pub mod popup;
pub mod runtime;
pub mod theme;
pub mod view;

pub use launch::{resolve_theme, run};
