//! The jobs themselves, one file per family; the worker that runs them is in
//! [`super::shared`].

mod code;
mod discovery;
mod grants;
mod tokens;

pub(in crate::worker) use tokens::RefreshAsked;
