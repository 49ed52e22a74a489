//! A corrupt spool file is moved aside and replaced by a fresh one, so a damaged file never
//! stops the agent. Owns the move, the notes a replacement leaves in `meta`, and
//! [`Spool::with_recovery`]: the one place that turns "a statement failed with
//! SQLITE_CORRUPT / SQLITE_NOTADB" into "replace the file and run the operation once more",
//! for hooks, flushes and the heartbeat alike.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{MetaKey, Spool, SpoolError, connection, now_ms};

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
        self.conn = connection::open_waiting(&self.path)?;
        self.file_id = connection::file_id(&self.path);
        if let Some(aside) = aside {
            self.note_recovery(aside)?;
        }
        Ok(())
    }

    /// Records on a fresh spool that it replaced the corrupt file now at `aside`.
    pub(super) fn note_recovery(&mut self, aside: PathBuf) -> Result<(), SpoolError> {
        let name = aside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.recovered_from = Some(aside);
        self.set_meta(MetaKey::RecoveredFrom, &name)?;
        // Ledgers created from now on ignore usage logged before this time (see
        // `crate::usage::SessionLedger::ignoring_before`).
        self.set_meta(MetaKey::RecoveredAtMs, &now_ms().to_string())?;
        self.set_meta(
            MetaKey::LastError,
            &format!("the spool was corrupt; moved aside to {name}"),
        )?;
        self.set_meta(MetaKey::LastErrorAtMs, &now_ms().to_string())?;
        Ok(())
    }

    /// When this spool file was started to replace a corrupt one (Unix ms); `None` for a
    /// spool that never replaced one.
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
