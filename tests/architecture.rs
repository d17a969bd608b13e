//! The rules ARCHITECTURE.md states, checked against the source: the lower layers never import
//! a front end, `vault/` and `commands/` have no import circle, and no function or file needs
//! scrolling.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest function, signature to closing brace.
const MAX_FUNCTION_LINES: usize = 60;
/// Longest file.
const MAX_FILE_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(src()).unwrap().display().to_string();
                found.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// The text before the file's test module: what the program itself imports.
fn program_part(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ")
        .map_or(text, |at| &text[..at])
}

#[test]
fn lower_layers_never_import_a_front_end() {
    let lower = [
        "vault/",
        "oauth/",
        "http/",
        "worker/",
        "health.rs",
        "report.rs",
    ];
    let front_ends = [
        "crate::commands",
        "crate::tui",
        "crate::agent",
        "crate::cli",
    ];
    let mut wrong = Vec::new();
    for (name, text) in rust_files(&src()) {
        if !lower.iter().any(|l| name.starts_with(l)) {
            continue;
        }
        for front in front_ends {
            if program_part(&text).contains(front) {
                wrong.push(format!("{name} uses {front}"));
            }
        }
        // The bottom layers return what went wrong; the edges decide what to print.
        for printing in ["note!(", "crate::output", "println!(", "eprintln!("] {
            if program_part(&text).contains(printing) {
                wrong.push(format!("{name} prints ({printing})"));
            }
        }
        if name.starts_with("http/") && program_part(&text).contains("crate::oauth") {
            wrong.push(format!("{name} uses crate::oauth: http sits below it"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The store is synchronous (files, locks, a blocking OpenBao client): async code holds a
/// `StoreHandle`, which runs each call on the blocking pool, never a store it could call on a
/// runtime's thread. Only the vault itself and the code that opens it share a store.
#[test]
fn async_code_reaches_the_store_only_through_its_handle() {
    let mut wrong = Vec::new();
    for (name, text) in rust_files(&src()) {
        if name.starts_with("vault/") || name == "context.rs" {
            continue;
        }
        for shared in [
            "Arc<Store>",
            "Arc<crate::vault::Store>",
            "Arc<vault::Store>",
        ] {
            if program_part(&text).contains(shared) {
                wrong.push(format!(
                    "{name} shares a store ({shared}): hold a StoreHandle"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_agent_starts_every_task_through_its_supervisor() {
    let mut wrong = Vec::new();
    for (name, text) in rust_files(&src().join("agent")) {
        for forbidden in ["tokio::spawn(", ".abort()"] {
            if program_part(&text).contains(forbidden) {
                wrong.push(format!("agent/{name}: {forbidden}"));
            }
        }
    }
    assert!(wrong.is_empty(), "untracked tasks: {}", wrong.join(", "));
}

/// The module of `src/DIR/` a file is (`vault/store/tests.rs` belongs to `store`).
fn submodule(dir: &str, name: &str) -> Option<String> {
    let rest = name.strip_prefix(dir)?.strip_prefix('/')?;
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Which modules of `src/DIR/` each one imports, leaving out tests and `mod.rs`.
fn submodule_imports(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(&src().join(dir));
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(n, _)| submodule(dir, n))
        .filter(|m| m != "mod")
        .collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in &files {
        let Some(from) = submodule(dir, name) else {
            continue;
        };
        if from == "mod" || name.ends_with("tests.rs") {
            continue;
        }
        let program = program_part(text);
        for to in &modules {
            let named = [
                format!("super::{to}::"),
                format!("super::{to}::{{"),
                format!("super::{{{to}"),
                format!("crate::{dir}::{to}::"),
            ];
            if *to != from && named.iter().any(|n| program.contains(n.as_str())) {
                uses.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    uses
}

/// Checks that no two modules of `src/DIR/` import each other; `from` is known to import
/// `to`, which shows the scan sees imports at all.
fn assert_no_circle_in(dir: &str, (from, to): (&str, &str)) {
    let uses = submodule_imports(dir);
    assert!(
        uses.get(from).is_some_and(|u| u.contains(to)),
        "no {dir} import found: {uses:?}"
    );
    let circles = in_a_circle(&uses);
    assert!(
        circles.is_empty(),
        "{dir} modules in a circle: {circles:?}\n{uses:#?}"
    );
}

#[test]
fn vault_has_no_import_circle() {
    // The file backend is known to use the file mechanics.
    assert_no_circle_in("vault", ("backend", "disk"));
}

#[test]
fn commands_have_no_import_circle() {
    // `token` is known to get its token from `tokens`.
    assert_no_circle_in("commands", ("token", "tokens"));
}

/// The modules from which `uses` leads back to themselves.
fn in_a_circle(uses: &BTreeMap<String, BTreeSet<String>>) -> Vec<&String> {
    // Depth-first search for a way back to where it started.
    fn reaches(
        uses: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        target: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in uses.get(from).into_iter().flatten() {
            if next == target || (seen.insert(next.clone()) && reaches(uses, next, target, seen)) {
                return true;
            }
        }
        false
    }
    uses.keys()
        .filter(|m| reaches(uses, m, m, &mut BTreeSet::new()))
        .collect()
}

/// Whether a trimmed line opens a function: `fn`, after any visibility and qualifiers.
fn starts_a_function(code: &str) -> bool {
    let mut rest = code;
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(inner) => inner.split_once(") ").map_or("", |(_, r)| r),
            None => after.trim_start(),
        };
    }
    for qualifier in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    rest.starts_with("fn ")
}

#[test]
fn no_file_and_no_function_needs_scrolling() {
    let mut wrong = Vec::new();
    for (name, text) in rust_files(&src()) {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            wrong.push(format!("{name}: {} lines", lines.len()));
        }
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let is_fn = starts_a_function(code);
            if !is_fn || code.ends_with(';') {
                continue;
            }
            let indent = &line[..line.len() - code.len()];
            let closing = format!("{indent}}}");
            if let Some(end) = lines[i + 1..].iter().position(|l| *l == closing) {
                let length = end + 2;
                if length > MAX_FUNCTION_LINES {
                    wrong.push(format!("{name}:{}: a function of {length} lines", i + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The layers, top to bottom, as ARCHITECTURE.md draws them (see
/// [`the_architecture_page_draws_the_layers_checked_here`]): a module imports only from its
/// own layer or those below, and no two modules import each other, however indirectly.
const LAYERS: &[(&str, &[&str])] = &[
    ("the executables", &["main", "bin", "front", "exit"]),
    ("the subcommands", &["commands"]),
    ("the command line, the runtime", &["cli", "runtime"]),
    ("the app and the agent", &["tui", "agent"]),
    ("the engine", &["context", "usable", "report", "filter"]),
    ("the async OAuth worker", &["worker"]),
    (
        "the protocol and the store",
        &[
            "oauth", "vault", "openbao", "audit", "health", "team", "config", "claims", "logging",
        ],
    ),
    (
        "foundations",
        &[
            "http", "clock", "display", "duration", "pacing", "platform", "qr", "output", "prompt",
        ],
    ),
];

/// The top-level module a file under `src/` belongs to.
fn top_module(name: &str) -> &str {
    let first = name.split('/').next().unwrap_or(name);
    first.trim_end_matches(".rs")
}

/// The layer a top-level module is in, counted from the top.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The top-level modules the program part of `text` names as `crate::MODULE` (comments and
/// macros aside).
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in program_part(text).lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let is_macro = rest[name.len()..].starts_with('!');
            let is_crate_var = code[..at].ends_with('$');
            if !name.is_empty() && !is_macro && !is_crate_var {
                found.insert(name);
            }
        }
    }
    found
}

/// Which top-level module imports which, from the program's files (tests aside).
fn module_imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in rust_files(&src()) {
        let from = top_module(&name);
        if from == "lib" || name.ends_with("tests.rs") || name.contains("/tests/") {
            continue;
        }
        let entry = uses.entry(from.to_string()).or_default();
        entry.extend(imported_modules(&text).into_iter().filter(|m| m != from));
    }
    uses
}

#[test]
fn every_module_has_a_layer() {
    let missing: Vec<String> = rust_files(&src())
        .iter()
        .map(|(name, _)| top_module(name).to_string())
        .filter(|m| m != "lib" && layer_of(m).is_none())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        missing.is_empty(),
        "modules in no layer (place them in LAYERS and ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let uses = module_imports();
    // The scan sees imports at all: the worker is known to use the vault.
    assert!(
        uses.get("worker").is_some_and(|u| u.contains("vault")),
        "no import found: {uses:?}"
    );
    let mut wrong = Vec::new();
    for (from, tos) in &uses {
        let Some(own) = layer_of(from) else { continue };
        for to in tos {
            match layer_of(to) {
                Some(layer) if layer < own => wrong.push(format!(
                    "{from} ({}) imports {to} ({}), above it",
                    LAYERS[own].0, LAYERS[layer].0
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other() {
    let uses = module_imports();
    let circles = in_a_circle(&uses);
    assert!(
        circles.is_empty(),
        "modules in a circle: {circles:?}\n{uses:#?}"
    );
}

/// The diagram of [`LAYERS`], as ARCHITECTURE.md shows it.
fn layers_diagram() -> String {
    let mut lines = Vec::new();
    for (i, (title, modules)) in LAYERS.iter().enumerate() {
        let named: Vec<String> = modules
            .iter()
            .map(|m| {
                if src().join(m).is_dir() {
                    format!("{m}/")
                } else {
                    format!("{m}.rs")
                }
            })
            .collect();
        // Wrapped to the page's width, under the first module.
        let mut line = format!("{title:<32}");
        for (j, module) in named.iter().enumerate() {
            let piece = if j + 1 < named.len() {
                format!("{module}, ")
            } else {
                module.clone()
            };
            if line.trim_end().len() + piece.len() > 96 {
                lines.push(line.trim_end().to_string());
                line = " ".repeat(32);
            }
            line.push_str(&piece);
        }
        lines.push(line);
        if i + 1 < LAYERS.len() {
            lines.push("    │".to_string());
        }
    }
    lines.join("\n")
}

#[test]
fn the_architecture_page_draws_the_layers_checked_here() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let drawn = layers_diagram();
    assert!(
        page.contains(&format!("```text\n{drawn}\n```")),
        "ARCHITECTURE.md's layer diagram differs from LAYERS in tests/architecture.rs; draw it as:\n```text\n{drawn}\n```"
    );
}
