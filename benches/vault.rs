//! Vault open (decrypt with an X25519 identity + parse every profile, or just one) and save
//! (serialize + encrypt + atomic write with backup) at 10, 1,000 and 10,000 profiles, of the
//! whole vault and of one changed profile.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn vault(c: &mut Criterion) {
    let mut group = c.benchmark_group("vault");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    for n in [10usize, 1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = support::vault(
            dir.path(),
            n,
            "https://api.factorialhr.com",
            support::at(0),
            |i| format!("refresh-{i}"),
        );
        let identity =
            tokdeck::vault::IdentityFile::load(&key, tokdeck::vault::crypto::NoPrompt).unwrap();
        group.bench_with_input(BenchmarkId::new("open", n), &n, |b, _| {
            b.iter(|| {
                let unlock = tokdeck::vault::Unlock::Identity(
                    tokdeck::vault::IdentityFile::load(&key, tokdeck::vault::crypto::NoPrompt)
                        .unwrap(),
                );
                let store = tokdeck::vault::Store::open(&path, unlock).unwrap();
                // Every profile parsed, as the app and `status` need them.
                store.read(|d| d.profiles.len()).unwrap()
            })
        });
        // What `token NAME` needs: decrypt, locate, and parse one profile.
        let middle = support::profile_name(n / 2);
        group.bench_with_input(BenchmarkId::new("open_one", n), &n, |b, _| {
            b.iter(|| {
                let unlock = tokdeck::vault::Unlock::Identity(
                    tokdeck::vault::IdentityFile::load(&key, tokdeck::vault::crypto::NoPrompt)
                        .unwrap(),
                );
                let store = tokdeck::vault::Store::open(&path, unlock).unwrap();
                store.profile(&middle).unwrap().unwrap()
            })
        });
        // Where open's time goes: decryption alone, and parsing alone.
        let ciphertext = std::fs::read(&path).unwrap();
        let unlock = tokdeck::vault::Unlock::Identity(identity);
        let location = tokdeck::vault::Location::File(path.clone());
        group.bench_with_input(BenchmarkId::new("decrypt", n), &n, |b, _| {
            b.iter(|| tokdeck::vault::crypto::decrypt(&ciphertext, &unlock, &location).unwrap())
        });
        let plaintext = tokdeck::vault::crypto::decrypt(&ciphertext, &unlock, &location).unwrap();
        group.bench_with_input(BenchmarkId::new("parse", n), &n, |b, _| {
            b.iter(|| tokdeck::vault::parse::parse_vault(&plaintext, &location).unwrap())
        });
        let store = support::open(&path, &key);
        let mut flip = false;
        group.bench_with_input(BenchmarkId::new("save", n), &n, |b, _| {
            b.iter(|| {
                flip = !flip;
                store
                    .update(|d| {
                        d.profiles[0].auto_refresh = flip;
                        Ok::<_, ()>(())
                    })
                    .unwrap()
                    .unwrap()
            })
        });
        // What the worker does with a new token: change one profile, render only it again.
        group.bench_with_input(BenchmarkId::new("save_one", n), &n, |b, _| {
            b.iter(|| {
                flip = !flip;
                store
                    .update_profiles([(middle.clone(), |p: &mut tokdeck::vault::Profile| {
                        p.auto_refresh = flip;
                    })])
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, vault);
criterion_main!(benches);
