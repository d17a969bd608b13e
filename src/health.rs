//! How urgent a profile is: the one judgement shared by `status`, the TUI and auto-refresh.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::duration::{format_ago, format_countdown};
use crate::vault::{Profile, Token};

/// How long before expiry a token is refreshed: the configured margin or a tenth of the
/// token's lifetime, whichever is larger, but never more than half the lifetime. A token that
/// lives shorter than the margin is thus refreshed once, half-way through, instead of on every
/// look. `None` when the token never expires.
pub fn refresh_margin_for(token: &Token, configured: Duration) -> Option<Duration> {
    let expires = token.expires_at?;
    let lifetime = u64::try_from((expires - token.obtained_at).num_seconds()).unwrap_or(0);
    let margin = configured.as_secs().max(lifetime / 10).min(lifetime / 2);
    Some(Duration::from_secs(margin))
}

/// Whether the access token works at `now`: it never expires, or has not yet.
pub fn access_alive(token: &Token, now: DateTime<Utc>) -> bool {
    token.expires_at.is_none_or(|at| at > now)
}

/// Whether the token can still be used or renewed at `now`.
pub fn still_works(token: &Token, now: DateTime<Utc>) -> bool {
    let renewable =
        token.refresh_token.is_some() && token.refresh_expires_at.is_none_or(|at| at > now);
    access_alive(token, now) || renewable
}

/// Whether a token that expires at `expires_at` (`None`: never) stays valid at least `min`
/// past `now` (`token --min-valid`).
pub fn lasts_at_least(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min: Duration,
) -> bool {
    expires_at.is_none_or(|at| seconds_until(at, now) >= crate::duration::secs_i64(min))
}

/// Whether the access token is still worth handing out at `now`: it never expires, or more
/// than its refresh margin is left.
pub fn access_usable(token: &Token, now: DateTime<Utc>, configured: Duration) -> bool {
    match (token.expires_at, refresh_margin_for(token, configured)) {
        (Some(at), Some(margin)) => seconds_until(at, now) > crate::duration::secs_i64(margin),
        _ => true,
    }
}

/// The one rule for "refresh now?": the token expires, has a refresh token whose window is
/// still open, and its access token ends within its refresh margin.
pub fn refresh_due(token: &Token, now: DateTime<Utc>, configured: Duration) -> bool {
    let window_open = token.refresh_expires_at.is_none_or(|end| end > now);
    token.refresh_token.is_some()
        && window_open
        && token.expires_at.is_some()
        && !access_usable(token, now, configured)
}

/// "Renew now?" for a profile: [`refresh_due`], or, for one that renews with its own client
/// credentials, an access token that ends within its margin.
pub fn renewal_due(
    profile: &Profile,
    token: &Token,
    now: DateTime<Utc>,
    configured: Duration,
) -> bool {
    if profile.renews_by_itself() {
        token.expires_at.is_some() && !access_usable(token, now, configured)
    } else {
        refresh_due(token, now, configured)
    }
}

/// The agent's keep-alive rule: refresh when the access token is due (for profiles that ask
/// for auto-refresh; for app tokens, that is all), or, for every refreshable profile, when its
/// refresh window ends within `horizon` (capped at half the window, so a short window is
/// renewed half-way, not on every look). A token whose window is over is left alone: only a
/// person can authorize again.
pub fn keepalive_due(
    profile: &Profile,
    token: &Token,
    now: DateTime<Utc>,
    margin: Duration,
    horizon: Duration,
) -> bool {
    keepalive_at(profile, token, now, margin, horizon).is_some_and(|at| at <= now)
}

/// When [`keepalive_due`] next holds for this token: the agent sleeps until the earliest of
/// these. `None` when it never will (no expiry, no refresh token, a window already over).
pub fn keepalive_at(
    profile: &Profile,
    token: &Token,
    now: DateTime<Utc>,
    margin: Duration,
    horizon: Duration,
) -> Option<DateTime<Utc>> {
    let access_due = || {
        let expires = token.expires_at?;
        let margin = refresh_margin_for(token, margin)?;
        Some(expires - chrono::Duration::seconds(crate::duration::secs_i64(margin)))
    };
    // An app token has no window to keep open: it is renewed when due, if asked to be.
    if profile.renews_by_itself() {
        return access_due().filter(|_| profile.auto_refresh);
    }
    if nothing_to_refresh(token)
        || token.refresh_token.is_none()
        || token.refresh_expires_at.is_some_and(|end| end <= now)
    {
        return None;
    }
    let access = access_due().filter(|_| profile.auto_refresh);
    let window = token.refresh_expires_at.map(|end| {
        let window = u64::try_from((end - token.obtained_at).num_seconds()).unwrap_or(0);
        let horizon = horizon.as_secs().min(window / 2);
        end - chrono::Duration::seconds(i64::try_from(horizon).unwrap_or(i64::MAX))
    });
    match (access, window) {
        (Some(a), Some(w)) => Some(a.min(w)),
        (a, w) => a.or(w),
    }
}

/// Whether there is nothing to refresh: the access token never expires (a company token).
/// Whatever refresh token came with it has no deadline to keep: `refresh` succeeds without a
/// request unless forced, `refresh --all` and the agent pass it by, and its refresh window
/// is not shown (rotating such a token revokes the copy a service was given).
pub fn nothing_to_refresh(token: &Token) -> bool {
    token.expires_at.is_none()
}

/// Whether a refresh asked for (`refresh NAME`, `refresh --all`) leaves `token` alone: it
/// never expires, unless `force`d and it has a refresh token to renew it with.
pub fn refresh_passes_by(token: &Token, force: bool) -> bool {
    nothing_to_refresh(token) && !(force && token.refresh_token.is_some())
}

/// A profile's condition, most urgent first (the order sorts the TUI table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// The last network action failed.
    Error,
    /// No way left to get an access token: authorize again.
    Expired,
    /// Never authorized.
    NoToken,
    /// The access token has expired but the refresh window is open: a refresh fixes it.
    Stale,
    /// The access token or the refresh window ends within the warn threshold.
    Expiring,
    /// All fine.
    Ok,
}

impl Health {
    /// The label shown in tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Health::Error => "error",
            Health::Expired => "expired",
            Health::NoToken => "no-token",
            Health::Stale => "stale",
            Health::Expiring => "expiring",
            Health::Ok => "ok",
        }
    }

    /// Exit code contribution for `status`: 0 fine, 1 attention soon, 2 broken now.
    pub fn exit_code(self) -> i32 {
        match self {
            Health::Ok => 0,
            Health::Expiring | Health::Stale => 1,
            Health::Error | Health::Expired | Health::NoToken => 2,
        }
    }
}

/// Seconds left until `at`, negative once past.
fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds()
}

/// Everything the tables show about a profile's timing, computed once per tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub health: Health,
    /// Seconds until the access token expires; `None` when it never does or there is none.
    pub access_left: Option<i64>,
    /// Seconds left in the refresh window; `None` without a refresh token.
    pub refresh_left: Option<i64>,
    pub has_token: bool,
    pub access_never_expires: bool,
}

impl Assessment {
    /// Judges `profile` at `now`, warning about anything that ends within `warn`.
    pub fn of(profile: &Profile, now: DateTime<Utc>, warn: Duration) -> Self {
        let warn = crate::duration::secs_i64(warn);
        let Some(token) = &profile.token else {
            let health = if profile.last_error.is_some() {
                Health::Error
            } else {
                Health::NoToken
            };
            return Self {
                health,
                access_left: None,
                refresh_left: None,
                has_token: false,
                access_never_expires: false,
            };
        };
        let access_left = token.expires_at.map(|t| seconds_until(t, now));
        // A token that never expires has no refresh deadline to keep.
        let refresh_left = match (&token.refresh_token, token.refresh_expires_at) {
            _ if nothing_to_refresh(token) => None,
            (Some(_), Some(t)) => Some(seconds_until(t, now)),
            _ => None,
        };
        let access_dead = access_left.is_some_and(|s| s <= 0);
        let can_refresh = refresh_left.is_some_and(|s| s > 0)
            || (token.refresh_token.is_some() && token.refresh_expires_at.is_none())
            || profile.renews_by_itself();
        let health = if profile.last_error.is_some() {
            Health::Error
        } else if refresh_left.is_some_and(|s| s <= 0) || (access_dead && !can_refresh) {
            Health::Expired
        } else if access_dead {
            Health::Stale
        } else if refresh_left.is_some_and(|s| s <= warn)
            || (!can_refresh && access_left.is_some_and(|s| s <= warn))
        {
            Health::Expiring
        } else {
            Health::Ok
        };
        Self {
            health,
            access_left,
            refresh_left,
            has_token: true,
            access_never_expires: token.expires_at.is_none(),
        }
    }

    /// `6d 23h 59m`, `expired 3m ago`, `never`, or `-` without a token.
    pub fn access_text(&self) -> String {
        if !self.has_token {
            return "-".into();
        }
        match self.access_left {
            None => "never".into(),
            Some(s) if s <= 0 => format!("expired {} ago", format_ago(-s)),
            Some(s) => format_countdown(s),
        }
    }

    /// `6d 23h 59m`, `over 2d ago`, or `-` without a refresh token.
    pub fn refresh_text(&self) -> String {
        match self.refresh_left {
            None => "-".into(),
            Some(s) if s <= 0 => format!("over {} ago", format_ago(-s)),
            Some(s) => format_countdown(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{OwnerType, Token};
    use age::secrecy::SecretString;

    const DAY: i64 = 86_400;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn profile(token: Option<Token>) -> Profile {
        let mut p = Profile::factorial_for_test("p");
        p.token = token;
        p
    }

    fn user_token(expires: i64, window: i64) -> Token {
        Token {
            access_token: SecretString::from("a"),
            refresh_token: Some(SecretString::from("r")),
            token_type: "Bearer".into(),
            scope: None,
            obtained_at: at(0),
            expires_at: Some(at(expires)),
            refresh_expires_at: Some(at(window)),
            id_token: None,
        }
    }

    fn judge(p: &Profile) -> Assessment {
        Assessment::of(p, at(0), Duration::from_secs(DAY as u64))
    }

    #[test]
    fn fresh_user_token_is_ok_and_counts_down() {
        let a = judge(&profile(Some(user_token(7_200, 7 * DAY))));
        assert_eq!(a.health, Health::Ok);
        assert_eq!(a.access_text(), "2h 0m");
        assert_eq!(a.refresh_text(), "7d 0h 0m");
    }

    #[test]
    fn expired_access_with_open_window_is_stale() {
        let a = judge(&profile(Some(user_token(-180, 3 * DAY))));
        assert_eq!(a.health, Health::Stale);
        assert_eq!(a.access_text(), "expired 3m ago");
        assert_eq!(a.health.exit_code(), 1);
    }

    #[test]
    fn window_closing_soon_is_expiring_and_over_is_expired() {
        assert_eq!(
            judge(&profile(Some(user_token(7_200, 3_600)))).health,
            Health::Expiring
        );
        let a = judge(&profile(Some(user_token(7_200, -2 * DAY))));
        assert_eq!(a.health, Health::Expired);
        assert_eq!(a.refresh_text(), "over 2d ago");
        assert_eq!(a.health.exit_code(), 2);
    }

    #[test]
    fn company_token_never_expires() {
        let mut t = user_token(0, 0);
        t.expires_at = None;
        t.refresh_token = None;
        t.refresh_expires_at = None;
        let mut p = profile(Some(t));
        p.owner = OwnerType::Company;
        let a = judge(&p);
        assert_eq!(a.health, Health::Ok);
        assert_eq!(a.access_text(), "never");
        assert_eq!(a.refresh_text(), "-");
    }

    /// A company token that came with a refresh token (Doorkeeper's default): the refresh
    /// window has nothing to keep alive, so its end neither shows nor counts, and neither
    /// the agent nor `refresh` renews it unasked.
    #[test]
    fn company_token_with_a_refresh_token_stays_ok_past_its_window() {
        for window in [DAY, 3_600, -DAY] {
            let mut t = user_token(0, window);
            t.expires_at = None;
            let mut p = profile(Some(t.clone()));
            p.owner = OwnerType::Company;
            p.auto_refresh = true;
            let a = judge(&p);
            assert_eq!(a.health, Health::Ok, "window {window}");
            assert_eq!(a.refresh_text(), "-");
            assert!(nothing_to_refresh(&t));
            assert!(refresh_passes_by(&t, false));
            assert!(!refresh_passes_by(&t, true));
            let keep = keepalive_at(
                &p,
                &t,
                at(0),
                Duration::from_secs(300),
                Duration::from_secs(DAY as u64),
            );
            assert_eq!(keep, None, "window {window}");
        }
    }

    #[test]
    fn access_only_token_expiring_soon_warns_then_expires() {
        let mut t = user_token(600, 0);
        t.refresh_token = None;
        t.refresh_expires_at = None;
        assert_eq!(judge(&profile(Some(t.clone()))).health, Health::Expiring);
        t.expires_at = Some(at(-1));
        assert_eq!(judge(&profile(Some(t))).health, Health::Expired);
    }

    #[test]
    fn the_refresh_margin_is_capped_at_half_the_lifetime() {
        let five_min = Duration::from_secs(300);
        // Two hours: a tenth of the lifetime (12 min) beats the configured five minutes.
        let t = user_token(7_200, 7 * DAY);
        assert_eq!(
            refresh_margin_for(&t, five_min),
            Some(Duration::from_secs(720))
        );
        // One minute, shorter than the margin: refreshed half-way, not at once.
        let short = user_token(60, 7 * DAY);
        assert_eq!(
            refresh_margin_for(&short, five_min),
            Some(Duration::from_secs(30))
        );
        assert!(!refresh_due(&short, at(29), five_min));
        assert!(refresh_due(&short, at(30), five_min));
        assert!(access_usable(&short, at(29), five_min));
        let mut company = user_token(0, 0);
        company.expires_at = None;
        assert_eq!(refresh_margin_for(&company, five_min), None);
        assert!(access_usable(&company, at(1_000_000), five_min));
        assert!(!refresh_due(&company, at(1_000_000), five_min));
    }

    #[test]
    fn nothing_is_due_without_a_refresh_token_or_after_the_window() {
        let five_min = Duration::from_secs(300);
        let mut t = user_token(60, 7 * DAY);
        t.refresh_expires_at = Some(at(10));
        assert!(!refresh_due(&t, at(50), five_min), "window closed");
        t.refresh_expires_at = Some(at(7 * DAY));
        t.refresh_token = None;
        assert!(!refresh_due(&t, at(50), five_min), "no refresh token");
    }

    #[test]
    fn the_agent_keeps_the_refresh_window_open() {
        let (margin, day) = (Duration::from_secs(300), Duration::from_secs(DAY as u64));
        let keepalive_due = |t: &Token, auto: bool, now, margin, horizon| {
            let mut p = profile(None);
            p.auto_refresh = auto;
            keepalive_due(&p, t, now, margin, horizon)
        };
        let t = user_token(7_200, 7 * DAY);
        assert!(!keepalive_due(&t, false, at(0), margin, day));
        assert!(
            !keepalive_due(&t, false, at(5 * DAY), margin, day),
            "access expiry alone"
        );
        assert!(
            keepalive_due(&t, true, at(7_000), margin, day),
            "auto-refresh"
        );
        assert!(
            keepalive_due(&t, false, at(6 * DAY), margin, day),
            "a day before the horizon"
        );
        assert!(
            !keepalive_due(&t, false, at(8 * DAY), margin, day),
            "over: authorize again"
        );
        let mut short = user_token(7_200, 3_600);
        assert!(!keepalive_due(&short, false, at(1_700), margin, day));
        assert!(
            keepalive_due(&short, false, at(1_800), margin, day),
            "half a short window"
        );
        short.refresh_token = None;
        assert!(!keepalive_due(&short, true, at(3_000), margin, day));
    }

    #[test]
    fn the_agent_renews_an_app_token_when_due_and_asked_to() {
        let (margin, day) = (Duration::from_secs(300), Duration::from_secs(DAY as u64));
        let mut t = user_token(3_600, 7 * DAY);
        t.refresh_token = None;
        t.refresh_expires_at = None;
        let mut app = profile(Some(t.clone()));
        app.grant = crate::vault::GrantType::ClientCredentials;
        assert!(
            !keepalive_due(&app, &t, at(3_500), margin, day),
            "not asked to"
        );
        app.auto_refresh = true;
        assert!(!keepalive_due(&app, &t, at(0), margin, day), "not due");
        assert!(keepalive_due(&app, &t, at(3_500), margin, day));
    }

    #[test]
    fn no_token_and_errors_are_broken() {
        assert_eq!(judge(&profile(None)).health, Health::NoToken);
        let mut p = profile(Some(user_token(7_200, 7 * DAY)));
        p.last_error = Some("boom".into());
        assert_eq!(judge(&p).health, Health::Error);
        assert!(Health::Error < Health::Ok);
    }
}
