//! Reading a profile's endpoints and capabilities again from its issuer's metadata.

use crate::oauth::OAuthError;
use crate::worker::Outcome;
use crate::worker::error::JobResult;
use crate::worker::shared::Worker;

impl Worker {
    /// Reads the profile's endpoints and capabilities again from its issuer's metadata.
    pub(in crate::worker) async fn rediscover(&self, name: &str) -> JobResult {
        let profile = self.current(name).await?;
        let Some(issuer) = profile.issuer.clone() else {
            return Err(OAuthError::Unsupported(format!(
                "'{name}' has no issuer to read metadata from: fill in Issuer in the edit form"
            ))
            .into());
        };
        let found = crate::oauth::discovery::discover(&self.client, &issuer).await?;
        let changed = found.changes(&profile);
        let saved = self.save(name, move |p| found.clone().apply(p)).await?;
        Ok((Outcome::Rediscovered { changed }, Some(saved)))
    }
}
