//! The encrypted store: model, age encryption, atomic save, lock, backup.

pub mod backend;
pub mod connection;
pub mod crypto;
pub mod disk;
pub mod entry;
pub mod error;
pub mod groups;
pub mod handle;
pub mod location;
pub mod model;
pub mod names;
pub mod parallel;
pub mod parse;
pub mod rollback;
pub mod scan;
mod snapshot;
pub mod store;
pub mod text;
pub mod trust;
pub mod validate;

pub use crypto::{IdentityFile, Sealing, Unlock};
pub use error::{Interrupted, VaultError};
pub use handle::StoreHandle;
pub use location::Location;
pub use model::{
    AuthMethod, CheckResult, Endpoints, GrantType, OwnerType, PendingAuth, Profile, ProfileError,
    Provider, ServerMetadata, Token, VaultData,
};
pub use store::{KeyedPrint, Lease, NoProfile, Refusal, SpendChanges, Store, TeamView};
