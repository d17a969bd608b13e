//! `tokdeck recipients remove ... --rotate`: every refresh token a removed key could read is
//! renewed, and the one it replaces revoked with its access token, each job recorded in the
//! audit log; what cannot be rotated (a server that keeps refresh tokens, a failure) is
//! listed, and makes the command fail, so a script sees that the offboarding is not done.

use anyhow::anyhow;

use super::on_worker::run_jobs;
use crate::context::Context;
use crate::vault::StoreHandle;
use crate::worker::{Event, Job, Outcome, Rotation};

/// Rotates every refresh token in `store` of the profiles `exposed` names.
pub async fn rotate_exposed(
    ctx: &Context,
    store: StoreHandle,
    exposed: &[String],
) -> anyhow::Result<()> {
    let exposed = exposed.to_vec();
    let names: Vec<String> = store
        .run(move |store| {
            store.read(|data| {
                data.profiles
                    .iter()
                    .filter(|p| exposed.contains(&p.name))
                    .filter(|p| p.token.as_ref().is_some_and(|t| t.refresh_token.is_some()))
                    .map(|p| p.name.clone())
                    .collect()
            })
        })
        .await?;
    if names.is_empty() {
        crate::note!("no refresh token to rotate");
        return Ok(());
    }
    let total = names.len();
    let jobs = names.into_iter().map(|n| (n, Job::Rotate)).collect();
    let mut left = Vec::new();
    let failures = run_jobs(ctx, store, jobs, |event| {
        if let Event::Succeeded {
            profile,
            outcome: Outcome::Rotated(rotation),
            ..
        } = event
        {
            crate::note!(
                "{profile}: {}",
                rotation.describe().replace("NAME", profile)
            );
            if *rotation != (Rotation::Renewed { unrevoked: None }) {
                left.push(profile.clone());
            }
        }
    })
    .await?;
    for f in &failures {
        crate::note!("{}: not rotated: {}", f.profile, f.error);
        left.push(f.profile.clone());
    }
    if left.is_empty() {
        crate::note!("rotated all {total} refresh tokens");
        return Ok(());
    }
    left.sort();
    Err(anyhow!(
        "{} of {total} refresh tokens are not fully rotated ({}): see each line above",
        left.len(),
        left.join(", ")
    ))
}
