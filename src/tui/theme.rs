//! Colour themes: TOML files keyed by role, built-ins compiled in, user files override.

use std::path::Path;

use anyhow::{anyhow, bail};
use ratatui::style::Color;

/// Colours by role, not by widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub background: Color,
    pub text: Color,
    pub muted: Color,
    pub accent: Color,
    pub selected: Color,
    pub ok: Color,
    pub warn: Color,
    pub danger: Color,
    pub expired: Color,
    pub never: Color,
    pub border: Color,
    /// With `NO_COLOR` every colour is the terminal's own; emphasis stays.
    pub monochrome: bool,
}

const BUILT_IN: [(&str, &str); 3] = [
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

const ROLES: [&str; 11] = [
    "background",
    "text",
    "muted",
    "accent",
    "selected",
    "ok",
    "warn",
    "danger",
    "expired",
    "never",
    "border",
];

impl Theme {
    /// Names of the themes shipped inside the binary.
    pub fn built_in_names() -> impl Iterator<Item = &'static str> {
        BUILT_IN.iter().map(|(n, _)| *n)
    }

    /// A built-in theme by name.
    pub fn built_in(name: &str) -> anyhow::Result<Self> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            anyhow!("no theme named '{name}': use default, light or high-contrast")
        })?;
        Self::parse(text, None, name)
    }

    /// The theme for `name`: `<user dir>/<name>.toml` first (partial files fill in from the
    /// default theme), then the built-ins.
    pub fn load(name: &str, user_dir: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(dir) = user_dir {
            let file = dir.join(format!("{name}.toml"));
            if file.exists() {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow!("cannot read theme {}: {e}", file.display()))?;
                let base = Self::built_in(name).or_else(|_| Self::built_in("default"))?;
                return Self::parse(&text, Some(&base), &file.display().to_string());
            }
        }
        Self::built_in(name)
    }

    /// Parses theme TOML over `base` (every role required without one).
    pub fn parse(text: &str, base: Option<&Theme>, origin: &str) -> anyhow::Result<Self> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| anyhow!("theme {origin} is not valid TOML: {}", e.message()))?;
        for key in table.keys() {
            if !ROLES.contains(&key.as_str()) {
                bail!(
                    "theme {origin}: unknown key '{key}': the roles are {}",
                    ROLES.join(", ")
                );
            }
        }
        let get = |role: &str, fallback: Option<Color>| -> anyhow::Result<Color> {
            match table.get(role) {
                Some(toml::Value::String(s)) => s.parse::<Color>().map_err(|_| {
                    anyhow!("theme {origin}: key '{role}' has colour '{s}' that is not a name, #rrggbb or reset")
                }),
                Some(_) => bail!("theme {origin}: key '{role}' must be a string such as \"red\" or \"#ff0000\""),
                None => fallback.ok_or_else(|| anyhow!("theme {origin}: key '{role}' is missing")),
            }
        };
        let b = base;
        Ok(Self {
            background: get("background", b.map(|t| t.background))?,
            text: get("text", b.map(|t| t.text))?,
            muted: get("muted", b.map(|t| t.muted))?,
            accent: get("accent", b.map(|t| t.accent))?,
            selected: get("selected", b.map(|t| t.selected))?,
            ok: get("ok", b.map(|t| t.ok))?,
            warn: get("warn", b.map(|t| t.warn))?,
            danger: get("danger", b.map(|t| t.danger))?,
            expired: get("expired", b.map(|t| t.expired))?,
            never: get("never", b.map(|t| t.never))?,
            border: get("border", b.map(|t| t.border))?,
            monochrome: false,
        })
    }

    /// Every colour reset, for `NO_COLOR`.
    pub fn monochrome() -> Self {
        Self {
            background: Color::Reset,
            text: Color::Reset,
            muted: Color::Reset,
            accent: Color::Reset,
            selected: Color::Reset,
            ok: Color::Reset,
            warn: Color::Reset,
            danger: Color::Reset,
            expired: Color::Reset,
            never: Color::Reset,
            border: Color::Reset,
            monochrome: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_parses() {
        for name in Theme::built_in_names() {
            Theme::built_in(name).unwrap();
        }
        assert!(Theme::built_in("neon").is_err());
    }

    #[test]
    fn user_theme_overrides_and_fills_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), "ok = \"#00ff00\"\n").unwrap();
        let t = Theme::load("mine", Some(dir.path())).unwrap();
        assert_eq!(t.ok, Color::Rgb(0, 255, 0));
        assert_eq!(t.warn, Theme::built_in("default").unwrap().warn);
    }

    #[test]
    fn bad_theme_names_the_key() {
        let err = Theme::parse(
            "ok = \"blurple\"",
            Theme::built_in("default").ok().as_ref(),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'ok'") && err.contains("blurple"), "{err}");
        let err = Theme::parse("okay = \"red\"", None, "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'okay'"), "{err}");
        let err = Theme::parse("ok = \"red\"", None, "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
