//! Pure OAuth: the authorize URL, token/refresh/revoke/check requests, response parsing,
//! error mapping, and the loopback redirect listener.

pub mod authorize;
pub mod check;
pub mod client;
pub mod device;
pub mod discovery;
pub mod error;
pub mod listener;
pub mod redirect;
pub mod token;

pub use crate::http::RetryPolicy;
pub use client::{OAuthClient, TokenResponse};
pub use error::{Grant, OAuthError};
