//! Reading what comes back from the authorize step: a pasted code, or a redirect URL.

use url::Url;

use super::OAuthError;

/// What a redirect carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub code: String,
    pub state: Option<String>,
    /// The issuer the server named (RFC 9207), if it did.
    pub iss: Option<String>,
}

/// What a person pasted, once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pasted {
    pub code: String,
    /// `None` for a bare code; for a redirect URL, the `iss` it carried (if any).
    pub iss: Option<Option<String>>,
}

/// RFC 9207's mix-up defence: a redirect that names an issuer must name the profile's, and
/// one from a server that promised to name itself must do so. `iss` is what the redirect
/// carried, `expected` the profile's issuer (from discovery), `promised` what its metadata
/// said. Without a known issuer there is nothing to compare with.
pub fn check_issuer(
    iss: Option<&str>,
    expected: Option<&str>,
    promised: bool,
) -> Result<(), OAuthError> {
    match (iss, expected) {
        (Some(got), Some(want)) if got != want => Err(OAuthError::IssuerMismatch {
            got: shorten(got),
            want: want.to_string(),
        }),
        (None, Some(_)) if promised => Err(OAuthError::IssuerMissing),
        _ => Ok(()),
    }
}

/// Parses a query string (`code=..&state=..` or `error=..`) into a callback.
pub fn parse_query(query: &str) -> Result<Callback, OAuthError> {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    let mut iss = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "iss" => iss = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(error) = error {
        return Err(OAuthError::Denied(match description {
            Some(d) => format!("{error} ({d})"),
            None => error,
        }));
    }
    match code {
        Some(code) if !code.trim().is_empty() => Ok(Callback { code, state, iss }),
        _ => Err(OAuthError::NoCode(shorten(query))),
    }
}

/// Takes what a person pasted: a bare code, or the whole redirect URL.
/// When the URL carries a state and `expected_state` is known, they must match.
pub fn parse_pasted(input: &str, expected_state: Option<&str>) -> Result<Pasted, OAuthError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(OAuthError::NoCode(String::new()));
    }
    let looks_like_url = input.contains("://") || input.contains('?') || input.contains("code=");
    if !looks_like_url {
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(OAuthError::NoCode(shorten(input)));
        }
        return Ok(Pasted {
            code: input.to_string(),
            iss: None,
        });
    }
    let query = match Url::parse(input) {
        Ok(url) => url.query().unwrap_or_default().to_string(),
        Err(_) => input.split_once('?').map_or(input, |(_, q)| q).to_string(),
    };
    let callback = parse_query(&query).map_err(|e| match e {
        OAuthError::NoCode(_) => OAuthError::NoCode(shorten(input)),
        other => other,
    })?;
    match (&callback.state, expected_state) {
        (Some(got), Some(want)) if got != want => return Err(OAuthError::StateMismatch),
        // A pending authorization sent a state, and a real redirect echoes it. Only the
        // out-of-band page (Doorkeeper's /oauth/authorize/native) shows the code without one.
        (None, Some(_)) if !is_out_of_band_page(input) => return Err(OAuthError::StateMissing),
        _ => {}
    }
    Ok(Pasted {
        code: callback.code,
        iss: Some(callback.iss),
    })
}

/// Doorkeeper's out-of-band page, `/oauth/authorize/native?code=...`: it shows the code for a
/// person to copy and never carries the state.
fn is_out_of_band_page(input: &str) -> bool {
    let path = input.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/').ends_with("/authorize/native")
}

fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_code_is_taken_as_is() {
        assert_eq!(parse_pasted("  abc123 \n", None).unwrap().code, "abc123");
    }

    #[test]
    fn redirect_url_yields_code_and_checks_state() {
        let url = "http://127.0.0.1:8765/cb?code=XYZ&state=s1";
        assert_eq!(parse_pasted(url, Some("s1")).unwrap().code, "XYZ");
        assert_eq!(parse_pasted(url, None).unwrap().code, "XYZ");
        assert!(matches!(
            parse_pasted(url, Some("other")),
            Err(OAuthError::StateMismatch)
        ));
        assert_eq!(
            parse_pasted("?code=Q&state=s", Some("s")).unwrap().code,
            "Q"
        );
    }

    #[test]
    fn a_redirect_without_state_is_refused_while_one_is_expected() {
        let no_state = "http://127.0.0.1:8765/cb?code=XYZ";
        assert!(matches!(
            parse_pasted(no_state, Some("s1")),
            Err(OAuthError::StateMissing)
        ));
        // Nothing pending: nothing to compare with.
        assert_eq!(parse_pasted(no_state, None).unwrap().code, "XYZ");
        // The out-of-band page never carries a state, and a bare code has none to carry.
        let native = "https://api.factorialhr.com/oauth/authorize/native?code=N1";
        assert_eq!(parse_pasted(native, Some("s1")).unwrap().code, "N1");
        assert_eq!(
            parse_pasted("bare-code", Some("s1")).unwrap().code,
            "bare-code"
        );
    }

    #[test]
    fn denial_and_missing_code_are_explained() {
        let err = parse_pasted(
            "https://x/cb?error=access_denied&error_description=The+user+said+no",
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "authorization denied: access_denied (The user said no)"
        );
        assert!(matches!(
            parse_pasted("https://x/cb?state=1", None),
            Err(OAuthError::NoCode(_))
        ));
        assert!(matches!(
            parse_pasted("two words", None),
            Err(OAuthError::NoCode(_))
        ));
        assert!(matches!(parse_pasted("", None), Err(OAuthError::NoCode(_))));
    }

    #[test]
    fn the_issuer_a_redirect_names_must_be_the_profiles() {
        let url = "http://127.0.0.1:8765/cb?code=C&state=s&iss=https%3A%2F%2Fevil.example";
        let pasted = parse_pasted(url, Some("s")).unwrap();
        assert_eq!(pasted.iss, Some(Some("https://evil.example".into())));
        let want = Some("https://good.example");
        assert!(matches!(
            check_issuer(Some("https://evil.example"), want, false),
            Err(OAuthError::IssuerMismatch { .. })
        ));
        assert!(check_issuer(Some("https://good.example"), want, true).is_ok());
        assert!(matches!(
            check_issuer(None, want, true),
            Err(OAuthError::IssuerMissing)
        ));
        assert!(check_issuer(None, want, false).is_ok());
        assert!(check_issuer(Some("https://any"), None, false).is_ok());
        assert_eq!(parse_pasted("bare", Some("s")).unwrap().iss, None);
    }
}
