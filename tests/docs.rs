//! The documents hold their shape: the README is a user guide of bounded size, and every
//! link between the documents leads to a file and a heading that exist.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents people read: the README, the pages beside it, and docs/.
fn documents() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = [
        "README.md",
        "SECURITY.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
    ]
    .iter()
    .map(|name| root().join(name))
    .collect();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found
}

/// The targets of the Markdown links `[text](target)` in `text`, outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn the_readme_is_a_user_guide_under_25_kb() {
    let readme = read(&root().join("README.md"));
    assert!(
        readme.len() < 25 * 1024,
        "README.md is {} bytes: keep it a user guide, and move references and internals to docs/",
        readme.len()
    );
    let headings = anchors(&readme);
    for section in [
        "set-up-two-commands",
        "quick-start",
        "the-full-screen-app",
        "tokens-for-programs",
        "the-agent-tokens-kept-alive-unlocked-once",
        "teams-the-vault-in-openbao-or-hashicorp-vault",
        "configuration",
    ] {
        assert!(
            headings.iter().any(|h| h == section),
            "no section {section}: {headings:?}"
        );
    }
    for page in [
        "docs/commands.md",
        "docs/agent.md",
        "docs/vault.md",
        "docs/providers.md",
    ] {
        assert!(
            readme.contains(&format!("]({page}")),
            "the README does not link {page}"
        );
    }
}

#[test]
fn every_link_between_the_documents_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = read(&document);
        let folder = document.parent().unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, heading) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                document.clone()
            } else {
                folder.join(file)
            };
            checked += 1;
            let markdown = path.extension().is_some_and(|e| e == "md");
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", document.display()));
            } else if !heading.is_empty()
                && markdown
                && !anchors(&read(&path)).iter().any(|a| a == heading)
            {
                broken.push(format!(
                    "{}: {target} (no such heading)",
                    document.display()
                ));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the link reader broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_manual_page_points_at_the_guide_and_its_references() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokdeck-core"))
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".SH \"SEE ALSO\""), "{page}");
    for reference in [
        "docs/commands.md",
        "docs/agent.md",
        "docs/vault.md",
        "SECURITY.md",
    ] {
        assert!(
            page.contains(reference),
            "the manual page does not name {reference}"
        );
    }
}
