//! Asking the person at the terminal: the passphrase of an SSH key that is itself encrypted,
//! and age's messages about it. An edge concern, handed down to `vault` as age callbacks.

use age::secrecy::SecretString;

/// age callbacks that ask on the controlling terminal and show messages on stderr.
#[derive(Clone, Copy, Debug, Default)]
pub struct Terminal;

impl age::Callbacks for Terminal {
    fn display_message(&self, message: &str) {
        crate::note!("{message}");
    }

    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }

    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }

    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        rpassword::prompt_password(format!("{description}: "))
            .ok()
            .map(SecretString::from)
    }
}
