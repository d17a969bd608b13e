//! Crash safety: a process saving the vault in a loop is killed with SIGKILL at many moments;
//! the vault always decrypts to the old or the new content, never a mix or a truncated file.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use age::secrecy::SecretString;
use tokdeck::vault::{
    Endpoints, IdentityFile, Profile, Provider, Sealing, Store, Unlock, VaultData,
};

const CHILD_DIR: &str = "TOKDECK_CRASH_CHILD_DIR";
const KILLS: u32 = 200;

fn open(dir: &Path) -> Store {
    let unlock = Unlock::Identity(
        IdentityFile::load(&dir.join("key.txt"), tokdeck::vault::crypto::NoPrompt).unwrap(),
    );
    Store::open(&dir.join("vault.age"), unlock).unwrap()
}

/// The counter a save writes: every save sets the notes of every profile to the same number,
/// so a mix of two saves would show two different numbers.
fn counters(data: &VaultData) -> Vec<u64> {
    data.profiles
        .iter()
        .map(|p| p.notes.parse().unwrap())
        .collect()
}

/// Not a test of its own: the child process that `vault_survives_sigkill_during_saves` runs
/// and kills. It saves in a loop until it is killed.
#[test]
#[ignore = "child process of vault_survives_sigkill_during_saves"]
fn save_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        panic!("run by vault_survives_sigkill_during_saves only");
    };
    let store = open(Path::new(&dir));
    loop {
        store
            .update(|data| {
                let next = counters(data)[0] + 1;
                for p in &mut data.profiles {
                    p.notes = next.to_string();
                }
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
    }
}

fn setup(dir: &Path) {
    let id = IdentityFile::generate(&dir.join("key.txt")).unwrap();
    let profiles = (0..50)
        .map(|i| {
            let mut p = Profile::new(
                format!("p{i}"),
                Provider::Factorial,
                Endpoints::at("https://api.factorialhr.com"),
                "c".into(),
                SecretString::from("s"),
                "urn:ietf:wg:oauth:2.0:oob".into(),
            );
            p.notes = "0".into();
            p
        })
        .collect();
    let data = VaultData {
        profiles,
        ..VaultData::default()
    };
    let recipients = id.recipients.clone();
    Store::create(
        &dir.join("vault.age"),
        data,
        Sealing::Recipients(recipients),
        Unlock::Identity(id),
    )
    .unwrap();
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

#[test]
fn vault_survives_sigkill_during_saves() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut last = 0;
    let mut jitter = common::Jitter::new(0x2545_f491_4f6c_dd1d);
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "save_loop_child",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a spread of moments: during start-up, mid-write, mid-rename.
        std::thread::sleep(Duration::from_micros(2_000 + jitter.below(40_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let data = open(dir.path()).snapshot().unwrap();
        let values = counters(&data);
        assert!(
            values.iter().all(|v| *v == values[0]),
            "round {round}: a mix of saves: {values:?}"
        );
        assert!(
            values[0] >= last,
            "round {round}: went back from {last} to {}",
            values[0]
        );
        last = values[0];
        let backup = dir.path().join("vault.age.bak");
        if backup.exists() {
            let unlock = Unlock::Identity(
                IdentityFile::load(
                    &dir.path().join("key.txt"),
                    tokdeck::vault::crypto::NoPrompt,
                )
                .unwrap(),
            );
            let bak = Store::open(&backup, unlock).unwrap().snapshot().unwrap();
            assert!(
                counters(&bak)[0] <= last,
                "round {round}: backup newer than the vault"
            );
        }
    }
    assert!(
        last > 0,
        "the child never completed a save: nothing was tested"
    );
    // A save under the lock sweeps temp files that killed writers left.
    let store = open(dir.path());
    store.update(|_| Ok::<_, ()>(())).unwrap().unwrap();
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
    eprintln!("{KILLS} kills survived; {last} saves completed");
}
