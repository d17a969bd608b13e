//! Pure OAuth: the authorize URL, token/refresh/revoke/check requests, response parsing,
//! error mapping, and the loopback redirect listener.

pub mod authorize;
pub mod check;
pub mod device;
pub mod discovery;
pub mod error;
pub mod listener;
pub mod redirect;
pub mod requests;
pub mod token;

pub use crate::http::RetryPolicy;
pub use error::{Grant, OAuthError};
pub use requests::{OAuthClient, TokenResponse};
