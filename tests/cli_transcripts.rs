//! Pinned transcripts of the stable command-line surface (`tests/cmd/*.toml`): exact stdout,
//! stderr and exit code. `TRYCMD=overwrite cargo test --test cli_transcripts` rewrites them
//! after an intended change.

#[test]
fn transcripts() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
