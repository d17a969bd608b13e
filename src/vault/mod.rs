//! The encrypted store: model, age encryption, atomic save, lock, backup.

pub mod crypto;
pub mod error;
pub mod model;
pub mod store;
pub mod validate;

pub use crypto::{IdentityFile, Sealing, Unlock};
pub use error::VaultError;
pub use model::{
    CheckResult, Endpoints, OwnerType, PendingAuth, Profile, ProfileError, Provider, Token,
    VaultData,
};
pub use store::{Lease, Store};
