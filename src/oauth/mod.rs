//! Pure OAuth: the authorize URL, token/refresh/revoke/check requests, response parsing,
//! error mapping, and the loopback redirect listener.

pub mod authorize;
pub mod check;
pub mod client;
pub mod device;
pub mod discovery;
pub mod error;
pub mod limit;
pub mod listener;
pub mod redirect;

pub use client::{OAuthClient, RetryPolicy, TokenResponse};
pub use error::{Grant, OAuthError};
