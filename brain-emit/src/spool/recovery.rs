//! A corrupt spool file is moved aside and replaced by a fresh one, so a damaged file never
//! stops the agent; what is still readable in it is first copied into the fresh one (see
//! `salvage`). Owns the move, the notes a replacement leaves in `meta` (with how many
//! queued events were salvaged and lost), and
//! [`Spool::with_recovery`]: the one place that turns "a statement failed with
//! SQLITE_CORRUPT / SQLITE_NOTADB" into "replace the file and run the operation once more",
//! for hooks, flushes and the heartbeat alike.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::salvage::{Salvaged, salvage};
use rusqlite::TransactionBehavior;

use super::{MetaKey, Spool, SpoolError, connection, meta, now_ms, queue, wal_check};

/// An error that may show that SQLite found the spool corrupt (in itself or one of its
/// causes): what [`Spool::with_recovery`] looks for.
pub trait MaybeCorrupt {
    /// The [`SpoolError`] reporting corruption (see [`SpoolError::is_corruption`]) in this
    /// error or its causes, if any.
    fn spool_corruption(&self) -> Option<&SpoolError>;
}

impl MaybeCorrupt for SpoolError {
    fn spool_corruption(&self) -> Option<&SpoolError> {
        self.is_corruption().then_some(self)
    }
}

impl MaybeCorrupt for anyhow::Error {
    fn spool_corruption(&self) -> Option<&SpoolError> {
        self.chain()
            .filter_map(|c| c.downcast_ref::<SpoolError>())
            .find(|e| e.is_corruption())
    }
}

impl Spool {
    /// Runs `op` on this spool; when it fails because SQLite found the file corrupt, replaces
    /// the file ([`Spool::recover`]) and runs `op` once more on the fresh spool, returning
    /// that second result.
    ///
    /// Damage past the file's header shows only when a statement reads the damaged page, so
    /// [`Spool::open`] cannot catch it all; every caller that must not be stopped by a
    /// damaged file (hooks, flushes, the heartbeat) runs its spool work through this.
    ///
    /// # Errors
    /// `op`'s error when it is not corruption, or its second error;
    /// [`SpoolError::Recover`] (converted into `E`) when the file cannot be replaced.
    pub fn with_recovery<T, E>(
        &mut self,
        mut op: impl FnMut(&mut Spool) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: MaybeCorrupt + From<SpoolError>,
    {
        let corruption = match op(self) {
            Err(e) => match e.spool_corruption() {
                Some(corrupt) => crate::error_chain(corrupt),
                None => return Err(e),
            },
            ok => return ok,
        };
        tracing::warn!(error = %corruption, "the spool is corrupt; moving it aside");
        if let Err(source) = self.recover() {
            return Err(SpoolError::Recover {
                corruption,
                source: Box::new(source),
            }
            .into());
        }
        op(self)
    }

    /// Replaces a spool found corrupt after it was opened (a statement failed with
    /// SQLITE_CORRUPT or SQLITE_NOTADB, see [`SpoolError::is_corruption`]): closes it, moves the
    /// file aside as [`Spool::open`] does, and continues on a fresh file. When another process
    /// already replaced the file, this one just switches to the replacement.
    ///
    /// # Errors
    /// [`SpoolError`] when the file cannot be moved or the fresh one cannot be created.
    pub fn recover(&mut self) -> Result<(), SpoolError> {
        // Close first: SQLite addresses the WAL by name, and after the rename that name
        // belongs to the fresh file.
        let placeholder = Connection::open_in_memory()?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let still_ours = self.file_id.is_some() && connection::file_id(&self.path) == self.file_id;
        let aside = if still_ours {
            Some(move_aside(&self.path)?)
        } else {
            None
        };
        self.conn = connection::open_waiting(&self.path)?.0;
        self.file_id = connection::file_id(&self.path);
        if let Some(aside) = aside {
            self.salvage_and_note(aside)?;
        }
        Ok(())
    }

    /// On a fresh spool that replaced the corrupt file now at `aside`: copies what is still
    /// readable there into this one, then records the replacement and its figures.
    pub(super) fn salvage_and_note(&mut self, aside: PathBuf) -> Result<(), SpoolError> {
        let salvaged = salvage(&aside, &mut self.conn).unwrap_or_else(|e| {
            tracing::warn!(error = %crate::error_chain(&e), "salvaging the corrupt spool failed");
            Salvaged::default()
        });
        tracing::warn!(
            queued = salvaged.queued,
            lost = ?salvaged.lost,
            ledgers = salvaged.ledgers,
            "salvaged the readable rows of the corrupt spool"
        );
        self.note_recovery(aside, salvaged)
    }

    /// Records on a fresh spool that it replaced the corrupt file now at `aside`, and what
    /// was salvaged from it.
    fn note_recovery(&mut self, aside: PathBuf, salvaged: Salvaged) -> Result<(), SpoolError> {
        let name = aside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.recovered_from = Some(aside);
        let lost = salvaged
            .lost
            .map_or_else(|| "an unknown number".to_owned(), |n| n.to_string());
        self.set_meta(MetaKey::RecoveredFrom, &name)?;
        // Ledgers created from now on ignore usage logged before this time (see
        // `crate::usage::SessionLedger::ignoring_before`).
        self.set_meta(MetaKey::RecoveredAtMs, &now_ms().to_string())?;
        self.set_meta(MetaKey::SalvagedRows, &salvaged.queued.to_string())?;
        match salvaged.lost {
            Some(n) => self.set_meta(MetaKey::LostRows, &n.to_string())?,
            None => self.delete_meta(MetaKey::LostRows)?,
        }
        self.set_meta(
            MetaKey::LastError,
            &format!(
                "the spool was corrupt; moved aside to {name}; salvaged {} queued events \
                 ({} session ledgers), lost {lost}",
                salvaged.queued, salvaged.ledgers
            ),
        )?;
        self.set_meta(MetaKey::LastErrorAtMs, &now_ms().to_string())?;
        Ok(())
    }

    /// Records on a spool just created where one had been (the file was truncated to 0 bytes
    /// or deleted) that whatever the old one held is lost; like a replacement, ledgers
    /// created from now on ignore usage logged before now, which may have been delivered.
    pub(super) fn note_found_empty(&mut self) -> Result<(), SpoolError> {
        let now = now_ms().to_string();
        tracing::warn!(path = %self.path.display(), "the spool file was empty where a spool had been");
        self.set_meta(MetaKey::FoundEmptyAtMs, &now)?;
        self.set_meta(MetaKey::RecoveredAtMs, &now)?;
        self.set_meta(
            MetaKey::LastError,
            "the spool file was found empty (truncated or deleted) where a spool had been; \
             the events it held are lost, how many is unknown",
        )?;
        self.set_meta(MetaKey::LastErrorAtMs, &now)?;
        Ok(())
    }

    /// Records, once per damage, transactions that a damaged WAL made SQLite drop (see
    /// `wal_check`): confirmed while holding the write lock, counted in `meta` and as
    /// dropped events, and reported as the last error.
    pub(super) fn note_wal_loss(&mut self) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(loss) = wal_check::check(&self.path) else {
            return Ok(());
        };
        if meta::get(&tx, MetaKey::WalDamageKey)?.as_deref() == Some(loss.key.as_str()) {
            return Ok(());
        }
        let now = now_ms().to_string();
        let known = loss.commits.unwrap_or(0);
        let total = meta::get_i64(&tx, MetaKey::WalLostCommits)?.unwrap_or(0)
            + i64::try_from(known).unwrap_or(i64::MAX);
        let what = loss.commits.map_or_else(
            || "every transaction in it (an unknown number)".to_owned(),
            |n| format!("{n} committed transactions (one per hook call)"),
        );
        tracing::warn!(path = %self.path.display(), %what, "the spool's WAL is damaged");
        meta::put(&tx, MetaKey::WalDamageKey, &loss.key)?;
        meta::put(&tx, MetaKey::WalLostCommits, &total.to_string())?;
        meta::put(&tx, MetaKey::WalDamageAtMs, &now)?;
        meta::put(
            &tx,
            MetaKey::LastError,
            &format!("the spool's WAL was damaged: SQLite dropped {what} written after the damage"),
        )?;
        meta::put(&tx, MetaKey::LastErrorAtMs, &now)?;
        queue::count_lost(&tx, i64::try_from(known).unwrap_or(i64::MAX))?;
        tx.commit()?;
        Ok(())
    }

    /// When this spool file was started to replace a corrupt one, or found empty where a
    /// spool had been (Unix ms); `None` for a spool that never lost one.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the read fails.
    pub fn recovered_at_ms(&self) -> Result<Option<i64>, SpoolError> {
        self.meta_i64(MetaKey::RecoveredAtMs)
    }

    /// Where the corrupt file was moved when this open replaced it.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }
}

/// Renames a corrupt spool (and its WAL/SHM side files) to `<path>.corrupt-<unix ms>`.
pub(super) fn move_aside(path: &Path) -> Result<PathBuf, SpoolError> {
    let suffix = format!("corrupt-{}", now_ms());
    let with = |ext: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let aside = with(&format!(".{suffix}"));
    std::fs::rename(path, &aside).map_err(|source| SpoolError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    for side in ["-wal", "-shm"] {
        let from = with(side);
        if from.exists() {
            let _ = std::fs::rename(&from, with(&format!(".{suffix}{side}")));
        }
    }
    Ok(aside)
}
