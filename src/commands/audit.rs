//! `tokdeck audit [NAME] [--since DUR] [--json]`: the token-lifecycle audit log (see
//! [`crate::audit`]), newest first.

use crate::cli::AuditArgs;
use crate::context::Context;

/// `tokdeck audit [NAME] [--since DUR] [--json]`: the audit log, newest first.
pub fn run(ctx: &Context, args: &AuditArgs) -> anyhow::Result<()> {
    let Some(log) = ctx.audit_log(crate::audit::Who::Cli) else {
        anyhow::bail!("no state folder to keep the audit log in: set XDG_STATE_HOME or HOME");
    };
    let since = args
        .since
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| ctx.clock.now() - d);
    let entries = crate::audit::read(&log.path, args.name.as_deref(), since);
    let mut out = String::new();
    for entry in &entries {
        if args.json {
            out.push_str(&crate::display::json_for_terminal(serde_json::to_string(
                entry,
            )?));
        } else {
            out.push_str(&crate::audit::describe(entry));
        }
        out.push('\n');
    }
    if entries.is_empty() && !args.json {
        crate::note!(
            "the audit log has no entries{}",
            if args.name.is_some() {
                " for this profile"
            } else {
                ""
            }
        );
    }
    // The log is a file anyone with the account can edit: shown, never executed.
    crate::output::print(&crate::display::untrusted_lines(&out))?;
    Ok(())
}
