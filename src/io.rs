//! The one seam through which eventdir writes: opening stream files, locks, appends with
//! rollback, fsync of files and directories, atomic file replacement. Durability is reasoned
//! about here and nowhere else.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result, no_symlinks};

/// Opens an existing stream file for reading without following a symlink, neither the file
/// itself nor its shard and type directories. Returns `None` when the file does not exist.
pub fn open_read(path: &Path) -> Result<Option<File>> {
    match open_without_atime(path, libc::O_RDONLY)? {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(refusal(path, e)),
    }
}

/// Whether `O_NOATIME` was refused once (the files belong to another user): not tried again.
static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);

/// Opens an existing stream file with `O_NOATIME` where the kernel allows it (the file is this
/// user's, or the process may act as its owner), else without. Reading a stream appended to
/// since its last read would otherwise dirty its inode for the access time, one journal update
/// per file: a clone or verify of ten thousand streams paid for ten thousand of them.
fn open_without_atime(path: &Path, flags: libc::c_int) -> Result<io::Result<File>> {
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        match no_symlinks::open(path, flags | libc::O_NOATIME, 0)? {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                NOATIME_REFUSED.store(true, Ordering::Relaxed);
            }
            opened => return Ok(opened),
        }
    }
    no_symlinks::open(path, flags, 0)
}

/// Raises this process's soft limit of open files to its hard limit (up to 2^20), as a process
/// that needs many files may; the soft limit then in force, `None` when it cannot be read.
pub fn raise_open_file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max.min(1 << 20),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur as usize)
}

/// Grows this process's table of open files to hold `count` more, in one step. The kernel
/// grows it by doubling as files are opened, and in a process with threads each growth waits
/// for an RCU grace period (`expand_fdtable`): about 70 ms in all, here, for 10 000 files kept
/// open by a clone's planning. One descriptor of `dir`, duplicated high up and closed again,
/// grows it once. Best effort: nothing happens when that fails.
pub fn reserve_open_files(dir: &Path, count: usize) {
    use std::os::fd::AsRawFd;
    let Ok(handle) = File::open(dir) else {
        return;
    };
    let Ok(target) = libc::c_int::try_from(count + handle.as_raw_fd() as usize) else {
        return;
    };
    // SAFETY: F_DUPFD on a valid descriptor; the duplicate, if made, is closed at once.
    unsafe {
        let duplicate = libc::fcntl(handle.as_raw_fd(), libc::F_DUPFD_CLOEXEC, target);
        if duplicate >= 0 {
            libc::close(duplicate);
        }
    }
}

/// Opens an existing stream file for appending, without locking it (see [`relock`]), or only
/// for reading when it cannot be written; with whether it is writable, `None` when there is
/// none. Never follows a symlink.
pub fn open_append_or_read(path: &Path) -> Result<Option<(File, bool)>> {
    match open_without_atime(path, libc::O_RDWR | libc::O_APPEND)? {
        Ok(file) => Ok(Some((file, true))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Ok(open_read(path)?.map(|file| (file, false)))
        }
        Err(e) => Err(refusal(path, e)),
    }
}

/// A stream file opened for appending, locked exclusively.
pub struct LockedStream {
    pub file: File,
    /// Whether this call created the file (and so may remove it again if its first append
    /// fails).
    pub created_file: bool,
    /// Directories this call created, outermost first.
    pub created_dirs: Vec<PathBuf>,
}

/// Opens a stream file for appending, creating it and its directories (below `root`) when
/// missing, and takes its exclusive lock. Never follows a symlink. After the lock is taken the
/// file is checked to still have a name: a writer whose new stream failed unlinks it under the
/// lock, and whoever waited on that lock opens the path again.
pub fn open_locked(root: &Path, path: &Path) -> Result<LockedStream> {
    Ok(try_open_locked(root, path, Wait::Yes)?.expect("a lock waited for is taken"))
}

/// Whether taking a lock waits for whoever holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Yes,
    /// No: give up at once, taking nothing.
    No,
}

/// [`open_locked`], or `None` when `wait` is [`Wait::No`] and another writer holds the lock
/// (the file, if this call created it, stays: empty, and that writer's now).
pub fn try_open_locked(root: &Path, path: &Path, wait: Wait) -> Result<Option<LockedStream>> {
    open_locked_creating(Some(root), path, wait)
}

/// [`open_locked`] of a stream file that exists: `None` when there is none, and nothing is
/// created. One open for a writer that must judge a request before creating a stream.
pub fn open_existing_locked(path: &Path) -> Result<Option<LockedStream>> {
    open_locked_creating(None, path, Wait::Yes)
}

/// Opens and locks `path`, creating it and its directories below `create_below` when given.
fn open_locked_creating(
    create_below: Option<&Path>,
    path: &Path,
    wait: Wait,
) -> Result<Option<LockedStream>> {
    const APPEND: libc::c_int = libc::O_RDWR | libc::O_APPEND;
    loop {
        let (file, created_file, created_dirs) = match no_symlinks::open(path, APPEND, 0)? {
            Ok(file) => (file, false, Vec::new()),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(refusal(path, e)),
            Err(_) => {
                let Some(root) = create_below else {
                    return Ok(None);
                };
                let parent = path.parent().expect("a stream file has a directory");
                let created_dirs = create_dirs(root, parent)?;
                let create = APPEND | libc::O_CREAT | libc::O_EXCL;
                match no_symlinks::open(path, create, 0o644)? {
                    Ok(file) => (file, true, created_dirs),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(refusal(path, e)),
                }
            }
        };
        if !lock_exclusive_if(&file, path, wait)? {
            return Ok(None);
        }
        if still_linked(&file, path)? {
            return Ok(Some(LockedStream {
                file,
                created_file,
                created_dirs,
            }));
        }
    }
}

/// Takes `file`'s exclusive lock; false, taking nothing, when `wait` is [`Wait::No`] and the
/// lock is held.
fn lock_exclusive_if(file: &File, path: &Path, wait: Wait) -> Result<bool> {
    match wait {
        Wait::Yes => lock_exclusive(file, path).map(|()| true),
        Wait::No => match file.try_lock() {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", path)(e)),
        },
    }
}

/// What [`relock`] found.
pub enum Relocked {
    /// The file, locked and unchanged.
    Locked(LockedStream),
    /// The file changed (and is closed): open the path again and read its tail.
    Changed,
    /// Another writer holds the lock (only without waiting): the file, still unlocked.
    Busy(File),
}

/// Takes the lock of a stream file kept open since this process last wrote it, and returns it
/// as locked only if the file is unchanged since: still named (not unlinked or renamed over)
/// and still `len` bytes long. Every eventdir writer only ever appends complete lines after the
/// length it finds, and truncates only back to that length, so an unchanged length means
/// nobody appended meanwhile.
pub fn relock(file: File, path: &Path, len: u64, wait: Wait) -> Result<Relocked> {
    use std::os::unix::fs::MetadataExt;
    if !lock_exclusive_if(&file, path, wait)? {
        return Ok(Relocked::Busy(file));
    }
    let now = file.metadata().map_err(Error::io("inspect", path))?;
    if now.nlink() == 0 || now.len() != len {
        return Ok(Relocked::Changed);
    }
    Ok(Relocked::Locked(LockedStream {
        file,
        created_file: false,
        created_dirs: Vec::new(),
    }))
}

/// Releases a stream's lock but keeps the file open for [`relock`].
pub fn unlock(stream: LockedStream, path: &Path) -> Result<File> {
    stream.file.unlock().map_err(Error::io("unlock", path))?;
    Ok(stream.file)
}

/// Whether `file` is still the file at `path` (not unlinked or replaced since it was opened).
fn still_linked(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(Error::io("inspect", path))?;
    match fs::symlink_metadata(path) {
        Ok(named) => Ok(open.nlink() > 0 && open.ino() == named.ino() && open.dev() == named.dev()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect", path)(e)),
    }
}

/// Undoes the creation of a stream whose first append failed: unlinks the (empty) file while
/// its lock is held, then removes the directories created for it, if still empty.
pub fn remove_new_stream(stream: &LockedStream, path: &Path) {
    if stream.file.metadata().map(|m| m.len()).unwrap_or(1) != 0 {
        return;
    }
    if fs::remove_file(path).is_ok() {
        for dir in stream.created_dirs.iter().rev() {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
        let top = stream
            .created_dirs
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(path);
        if let Some(parent) = top.parent() {
            let _ = sync_dir(parent);
        }
    }
}

/// Creates `dir` and its missing parents below `root`, fsyncing each parent whose entries
/// changed, and refuses a symlink on the way. Returns the directories it created.
pub fn create_dirs(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let relative = dir
        .strip_prefix(root)
        .expect("directories are created inside the folder");
    let mut current = root.to_path_buf();
    let mut created = Vec::new();
    for part in relative.iter() {
        let parent = current.clone();
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                return Err(Error::Io {
                    action: "use",
                    path: current,
                    source: io::Error::other("expected a directory (symlinks are not followed)"),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", &current)(e)),
        }
        match fs::create_dir(&current) {
            Ok(()) => {
                sync_dir(&parent)?;
                created.push(current.clone());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create directory", &current)(e)),
        }
    }
    Ok(created)
}

fn refusal(path: &Path, e: io::Error) -> Error {
    // O_NOFOLLOW makes open fail with ELOOP on a symlink.
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::Io {
            action: "open",
            path: path.to_path_buf(),
            source: io::Error::other("it is a symlink, which eventdir refuses to follow"),
        };
    }
    Error::io("open", path)(e)
}

/// Takes the stream's exclusive advisory lock, waiting for it.
pub fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    file.lock().map_err(Error::io("lock", path))
}

/// Takes a shared advisory lock, waiting for it.
pub fn lock_shared(file: &File, path: &Path) -> Result<()> {
    file.lock_shared().map_err(Error::io("lock", path))
}

/// Appends `bytes` to `file`, whose length is `len`. A failed or short write truncates the file
/// back to `len`, so a failed append leaves the stream exactly as it was.
pub fn append_or_roll_back(file: &mut File, path: &Path, len: u64, bytes: &[u8]) -> Result<()> {
    if let Err(e) = file.write_all(bytes) {
        let _ = file.set_len(len);
        let _ = file.sync_data();
        return Err(Error::io("append to", path)(e));
    }
    Ok(())
}

/// Truncates `file` to `len` and makes that durable (used to drop a torn tail).
pub fn truncate(file: &File, path: &Path, len: u64) -> Result<()> {
    file.set_len(len).map_err(Error::io("truncate", path))?;
    sync_file(file, path)
}

/// Makes the file's data durable. An fsync error is never retried: after one, the kernel may
/// have dropped the dirty pages, so a second fsync could report success for lost data.
pub fn sync_file(file: &File, path: &Path) -> Result<()> {
    file.sync_data().map_err(Error::io("fsync", path))
}

/// Starts writing `file`'s dirty pages back without waiting for them, so that a later
/// `syncfs` finds them written or on their way. Only a hint: a write-back error it meets is
/// reported by that `syncfs` (see [`FilesystemSync`]).
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only acts on the descriptor, which `file` keeps open.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Makes a directory's entries durable (a created, renamed or removed file).
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(Error::io("open directory", dir))?;
    handle.sync_all().map_err(Error::io("fsync directory", dir))
}

/// A pending `syncfs` of the file system holding a directory. It is opened before the writes
/// it covers, because `syncfs` reports the write-back errors seen since its descriptor was
/// opened.
pub struct FilesystemSync {
    handle: File,
    dir: PathBuf,
}

impl FilesystemSync {
    /// Starts covering the file system that holds `dir`.
    pub fn begin(dir: &Path) -> Result<FilesystemSync> {
        let handle = File::open(dir).map_err(Error::io("open directory", dir))?;
        Ok(FilesystemSync {
            handle,
            dir: dir.to_path_buf(),
        })
    }

    /// Makes everything written since [`FilesystemSync::begin`] durable, names included.
    pub fn finish(self) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the descriptor, which `self.handle` keeps open.
        if unsafe { libc::syncfs(self.handle.as_raw_fd()) } != 0 {
            return Err(Error::io("sync the file system of", &self.dir)(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// fsyncs every directory from `path`'s parent up to and including `top`, so that a new file's
/// name is as durable as its contents.
pub fn sync_parents(path: &Path, top: &Path) -> Result<()> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        sync_dir(d)?;
        if d == top {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: a temporary file beside it, renamed over it. With
/// `durable`, the data and the rename are fsynced; derived files skip that because they are
/// checked when read.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| refusal(&tmp, e))?;
        file.write_all(bytes).map_err(Error::io("write", &tmp))?;
        if durable {
            sync_file(&file, &tmp)?;
        }
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if durable {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(dir)?;
    }
    Ok(())
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset)
        .map_err(Error::io("read", path))
}
