//! Profile names that are taken or missing, and the closest to one mistyped: what "did you
//! mean" offers.

/// Why a change to the profile list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "a profile named '{0}' already exists (names are compared ignoring case): choose another name, or `tokdeck remove {0}` first"
    )]
    NameTaken(String),
    #[error("no profile named '{0}': see `tokdeck status`")]
    NotFound(String),
    #[error("no profile named '{name}': did you mean '{like}'? (`tokdeck status` lists them)")]
    NotFoundLike { name: String, like: String },
}

impl ProfileError {
    /// `name` is not among `names`: with the closest of them when there is one
    /// ([`closest`]).
    pub fn missing<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Self {
        let like = closest(name, names);
        let name = crate::display::untrusted(name).into_owned();
        match like {
            Some(like) => Self::NotFoundLike {
                name,
                like: crate::display::untrusted(like).into_owned(),
            },
            None => Self::NotFound(name),
        }
    }
}

/// The name of `names` closest to `name`, when one is close enough to be a slip of the
/// keyboard (`lop` for `loop`, `ACME` for `acme`): the same ignoring case, or a Jaro-Winkler
/// similarity of at least 0.85 (which favours a shared beginning, as typing slips keep).
pub fn closest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = name.to_lowercase();
    let score = |candidate: &str| {
        if candidate.eq_ignore_ascii_case(name) {
            1.0
        } else {
            strsim::jaro_winkler(&wanted, &candidate.to_lowercase())
        }
    };
    names
        .into_iter()
        .map(|candidate| (score(candidate), candidate))
        .filter(|(s, _)| *s >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use crate::vault::ProfileError;

    #[test]
    fn a_missing_name_suggests_the_closest_when_it_is_close() {
        let names = ["loop", "payroll", "acme"];
        let lop = ProfileError::missing("lop", names).to_string();
        assert!(lop.contains("did you mean 'loop'?"), "{lop}");
        let upper = ProfileError::missing("ACME", names).to_string();
        assert!(upper.contains("did you mean 'acme'?"), "{upper}");
        let far = ProfileError::missing("zzz", names).to_string();
        assert_eq!(far, "no profile named 'zzz': see `tokdeck status`");
        let none = ProfileError::missing("x", []).to_string();
        assert!(!none.contains("did you mean"), "{none}");
    }
}
