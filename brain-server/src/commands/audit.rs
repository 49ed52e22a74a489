//! `brain-server audit`: the audit log of admin actions, newest first, as `GET /admin/audit`.

use anyhow::Context as _;
use shared_proto::admin::AuditPage;

use super::{checked_limit, json_text, out, time_text};
use crate::config::DbConfig;

/// Prints the newest `limit` audit entries: a tab-separated table (parameters as compact
/// JSON), or with `json` the page `GET /admin/audit?limit=` answers.
///
/// # Errors
/// [`super::UserError`] for a `--limit` outside 1–1000; any other error when the database
/// cannot be read or stdout written.
pub(super) async fn list(db: &DbConfig, limit: u32, json: bool) -> anyhow::Result<()> {
    let limit = checked_limit(limit)?;
    let store = crate::open_store(db).await?;
    let entries = store.audit_page(limit + 1, None).await;
    store.close().await;
    let mut entries = entries.context("reading the audit log")?;
    let more = entries.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if json {
        let page = AuditPage {
            next_cursor: more
                .then(|| entries.last().map(|e| e.id.to_string()))
                .flatten(),
            entries: entries.into_iter().map(Into::into).collect(),
        };
        return out(&json_text(&page)?);
    }
    let mut text = String::from("id\tat\tactor\taction\tparams\n");
    for e in entries {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            e.id,
            time_text(e.at),
            e.actor,
            e.action,
            e.params
        ));
    }
    out(&text)
}
