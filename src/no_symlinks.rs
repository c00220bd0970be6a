//! Opening stream files (`…/streams/TYPE/SHARD/FILE`) without following a symlink: neither the
//! file nor its type and shard directories, so that no stream is read or written outside its
//! folder. Where the kernel has `openat2` (Linux 5.6 and later) that is one system call,
//! relative to the folder's `streams/` directory with `RESOLVE_NO_SYMLINKS`; elsewhere it is
//! `open` with `O_NOFOLLOW` and a look at both directories, three calls. A clone or a batch over
//! many streams opens thousands of files, so the difference shows.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::{Error, Result};

/// Opens the stream file at `path` with `open(2)` flags `flags` (and `mode`, when creating).
/// The outer error refuses a symlinked type or shard directory; the inner result is the
/// open's own, `ELOOP` when the file itself is a symlink.
pub fn open(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> Result<io::Result<File>> {
    match open_beneath_streams(path, flags, mode) {
        None => {}
        // Not there, or the `streams/` directory kept open is no longer the one at its path
        // (the folder was removed and made again): the path itself decides.
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            let opened = open_by_path(path, flags, mode)?;
            if opened.is_ok() {
                forget_streams_dirs();
            }
            return Ok(opened);
        }
        Some(opened) => {
            if opened
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ELOOP))
            {
                // Name the directory that is a symlink, if it is one rather than the file.
                refuse_symlinked_dirs(path)?;
            }
            return Ok(opened);
        }
    }
    open_by_path(path, flags, mode)
}

/// `open` of the whole path with `O_NOFOLLOW` (for the file), then a look at both directories.
fn open_by_path(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> Result<io::Result<File>> {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Ok(Err(io::Error::from(io::ErrorKind::InvalidInput)));
    };
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `c_path` is a valid C string; the descriptor returned is owned by the File.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags, libc::c_uint::from(mode)) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) {
            refuse_symlinked_dirs(path)?;
        }
        return Ok(Err(e));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    refuse_symlinked_dirs(path)?;
    Ok(Ok(file))
}

/// Set once `openat2` turns out to be missing (an old kernel, or a sandbox that forbids it).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// `openat2` relative to the `streams/` directory above `path`, refusing a symlink anywhere
/// below it; `None` when that cannot be used here.
fn open_beneath_streams(
    path: &Path,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Option<io::Result<File>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let streams = path.ancestors().nth(3)?;
    let relative = CString::new(path.strip_prefix(streams).ok()?.as_os_str().as_bytes()).ok()?;
    let dir = streams_dir(streams)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & libc::O_CREAT != 0 {
        u64::from(mode)
    } else {
        0
    };
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: the pointers are valid for the call, and the size is that of `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            relative.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            return None;
        }
        return Some(Err(e));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Some(Ok(unsafe { File::from_raw_fd(fd as libc::c_int) }))
}

/// The `streams/` directories opened so far, kept open for the life of the process: a process
/// works in one or two folders (a clone's source and destination).
static STREAMS_DIRS: Mutex<Vec<(PathBuf, Arc<File>)>> = Mutex::new(Vec::new());

fn forget_streams_dirs() {
    if let Ok(mut dirs) = STREAMS_DIRS.lock() {
        dirs.clear();
    }
}

fn streams_dir(path: &Path) -> Option<Arc<File>> {
    let mut dirs = STREAMS_DIRS.lock().ok()?;
    if let Some((_, dir)) = dirs.iter().find(|(p, _)| p == path) {
        return Some(Arc::clone(dir));
    }
    let dir = Arc::new(File::open(path).ok()?);
    dirs.push((path.to_path_buf(), Arc::clone(&dir)));
    Some(dir)
}

/// Refuses a stream path whose shard or type directory (`streams/TYPE/SHARD/`) is a symlink.
pub fn refuse_symlinked_dirs(path: &Path) -> Result<()> {
    for dir in path.ancestors().skip(1).take(2) {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::Io {
                    action: "use",
                    path: dir.to_path_buf(),
                    source: io::Error::other("it is a symlink, which eventdir refuses to follow"),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_file(root: &Path, shard: &str) -> PathBuf {
        let dir = root.join("streams").join("t").join(shard);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("1.ndjson");
        std::fs::write(&file, "x\n").unwrap();
        file
    }

    #[test]
    fn a_folder_removed_and_made_again_is_opened_at_its_path() {
        let root = tempfile::tempdir().unwrap();
        let file = stream_file(root.path(), "aa");
        assert!(open(&file, libc::O_RDONLY, 0).unwrap().is_ok());
        std::fs::remove_dir_all(root.path().join("streams")).unwrap();
        let file = stream_file(root.path(), "aa");
        assert!(open(&file, libc::O_RDONLY, 0).unwrap().is_ok());
        let missing = root.path().join("streams/t/aa/2.ndjson");
        let e = open(&missing, libc::O_RDONLY, 0).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn symlinked_directories_and_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let real = stream_file(root.path(), "aa");
        let shard = root.path().join("streams/t/bb");
        std::os::unix::fs::symlink(real.parent().unwrap(), &shard).unwrap();
        let err = open(&shard.join("1.ndjson"), libc::O_RDONLY, 0).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let link = real.with_file_name("2.ndjson");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open(&link, libc::O_RDONLY, 0).unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}
