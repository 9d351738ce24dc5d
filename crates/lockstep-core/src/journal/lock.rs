//! The journal's `LOCK` file: one runtime writes a journal directory at a time.
//!
//! The lock is the operating system's advisory whole-file lock (`flock` on Unix, `LockFileEx`
//! on Windows, through `std::fs::File::try_lock`), held for as long as the journal is open.
//! The kernel releases it when the process dies, however it dies, so a lock can never outlive
//! its holder; the file's content, the holder's pid, only names it in errors. A second runtime,
//! in this process or another, gets `E_JOURNAL_LOCKED` naming that pid. A pid left in the file
//! by a holder that did not close the journal (killed, crashed) is noted when the lock is
//! taken over; a clean close empties the file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{io_error, LOCK_FILE};
use crate::error::{LockstepError, Result};

/// The lock on a journal directory, held until dropped.
pub(crate) struct DirLock {
    file: File,
    /// Set when the lock was taken over from a holder that did not close the journal.
    pub(crate) took_over: Option<String>,
}

/// The pid the lock file names, if any.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl DirLock {
    /// Takes the lock of `dir`: `E_JOURNAL_LOCKED` if a live runtime holds it, `E_JOURNAL_IO`
    /// if the file cannot be opened or written.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        let path: PathBuf = dir.join(LOCK_FILE);
        // A regular file, never what a link points to: taking the lock truncates the file and
        // writes a pid into it (red team of issue 12: a LOCK link to another file had that
        // file emptied).
        let not_a_file = |what: &str| LockstepError::JournalIo {
            path: path.display().to_string(),
            reason: format!("the journal's lock file is {what}: remove it (it holds only a pid) and try again"),
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(not_a_file("a symbolic link, not a regular file")),
            Ok(m) if !m.is_file() => return Err(not_a_file("a directory, a FIFO or a device, not a regular file")),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, "opening the journal's lock file", &e))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(not_a_file("not a regular file (it was replaced while being opened)"));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let me = std::process::id();
                let holder = match holder_pid(&mut file) {
                    Some(pid) if pid == me => format!("{pid} (this process: another Runtime here has it open)"),
                    Some(pid) => pid.to_string(),
                    None => "unknown (it is opening the journal now)".into(),
                };
                return Err(LockstepError::JournalLocked { dir: dir.display().to_string(), holder });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(&path, "locking the journal's lock file", &e)),
        }
        let took_over = holder_pid(&mut file)
            .map(|pid| format!("journal {}: took over the lock of pid {pid}, which did not close the journal (it was killed or crashed)", dir.display()));
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            file.sync_data()
        };
        write(&mut file).map_err(|e| io_error(&path, "writing the journal's lock file", &e))?;
        Ok(Self { file, took_over })
    }
}

impl Drop for DirLock {
    /// A clean close empties the file (no pid: nobody to take over from); the lock itself goes
    /// with the file handle.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}
