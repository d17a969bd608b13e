//! `tokdeck token`: the token, or an Authorization header line, on stdout; the small
//! `tokdeck` executable prints what an agent handed out the same way.

use std::io::IsTerminal;

use age::secrecy::ExposeSecret;

use super::tokens::TokenSource;
use crate::context::Context;
use crate::usable::Issued;

/// `tokdeck token`: only the token goes to stdout (or an Authorization header line).
pub fn token(ctx: &Context, args: &crate::cli::TokenArgs) -> anyhow::Result<()> {
    let issued = TokenSource::new(ctx).obtain_blocking(&args.name, args.min_valid)?;
    print_issued(&issued, args.header)
}

/// What `token` prints: the token, or with `header` an Authorization header line.
pub fn print_issued(issued: &Issued, header: bool) -> anyhow::Result<()> {
    if header {
        let line = zeroize::Zeroizing::new(format!(
            "Authorization: Bearer {}",
            issued.access_token.expose_secret()
        ));
        return Ok(crate::output::println(&line)?);
    }
    print_token(issued)
}

/// The token on stdout: a newline on a terminal, none in a pipe (for `$(tokdeck token x)` and
/// pipes that hash or compare it).
pub fn print_token(issued: &Issued) -> anyhow::Result<()> {
    let secret = issued.access_token.expose_secret();
    if std::io::stdout().is_terminal() {
        crate::output::println(secret)?;
    } else {
        crate::output::print(secret)?;
    }
    Ok(())
}
