//! A real small disk for disk-full tests: a tmpfs mounted at a fresh temporary directory,
//! grown on demand (space freed, as an operator would) and unmounted on drop, also when a
//! test fails. Shared by the engine's tests and the node's (`tests/node_limits.rs`
//! includes this file by path).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A mounted tmpfs; unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it). Returns `None`, saying
    /// so on stderr, when this process is not root and may not mount (the fault-seam
    /// tests cover the same rules there); root that cannot mount fails the test.
    pub fn mount_or_skip(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Tmpfs { dir });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        assert!(
            unsafe { libc::geteuid() } != 0,
            "root could not mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs as a non-root user");
        None
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Grows (or shrinks) the file system.
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}
