//! Typing a filter: the text lives in the app (the table reads it); this is its keys.

use super::Reply;
use crate::tui::keymap::Action;

/// Applies a key to the filter text.
pub fn on_key(filter: &mut String, action: Option<Action>, typed: Option<char>) -> Reply {
    match (action, typed) {
        (Some(Action::Submit), _) => Reply::Close,
        (Some(Action::Cancel), _) => {
            filter.clear();
            Reply::Close
        }
        (Some(Action::DeleteChar), _) => {
            filter.pop();
            Reply::Stay
        }
        (None, Some(c)) => {
            filter.push(c);
            Reply::Stay
        }
        _ => Reply::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_deletes_keeps_and_clears() {
        let mut f = String::new();
        on_key(&mut f, None, Some('a'));
        on_key(&mut f, None, Some('b'));
        on_key(&mut f, Some(Action::DeleteChar), None);
        assert_eq!(f, "a");
        assert!(matches!(
            on_key(&mut f, Some(Action::Submit), None),
            Reply::Close
        ));
        assert_eq!(f, "a");
        on_key(&mut f, Some(Action::Cancel), None);
        assert!(f.is_empty());
    }
}
