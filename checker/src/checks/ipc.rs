//! Layer 04: the host's System V and POSIX message queues are invisible
//! inside.

use super::{every_step, expect, fail, in_new_namespace, Check, Kind, Outcome};
use crate::run::Target;

pub fn checks() -> Vec<Check> {
    let check = |name, proves, run| Check { name, layer: 4, kind: Kind::Isolation, proves, applies: every_step, rootless: true, run };
    vec![
        check("ipc-namespace", "the container is in an IPC namespace of its own", ipc_namespace),
        check("sysv-queue-invisible", "a System V queue made on the host is not listed inside", sysv_queue_invisible),
        check("posix-queue-invisible", "a POSIX queue made on the host is not in /dev/mqueue inside", posix_queue_invisible),
    ]
}

fn ipc_namespace(t: &Target) -> Outcome {
    in_new_namespace(t, "ipc", "add CloneFlags::CLONE_NEWIPC to the clone() flags")
}

fn sysv_queue_invisible(t: &Target) -> Outcome {
    let queue = match SysvQueue::create() {
        Ok(q) => q,
        Err(err) => return fail("msgget(IPC_CREAT) on the host", "a queue", err.to_string(), "is System V IPC available?"),
    };
    let out = t.run(&["cat", "/proc/sysvipc/msg"]);
    let listed = out.stdout.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    let hint = "clone() with CLONE_NEWIPC: a new IPC namespace starts with no queues";
    expect(out.status == Some(0) && listed == 0, &out, format!("no queues (the host has msqid {})", queue.id), hint)
}

fn posix_queue_invisible(t: &Target) -> Outcome {
    let name = format!("ctlab-check-{}", std::process::id());
    let queue = match PosixQueue::create(&name) {
        Ok(q) => q,
        Err(err) => return fail("mq_open(O_CREAT) on the host", "a queue", err.to_string(), ""),
    };
    if !std::path::Path::new("/dev/mqueue").join(&name).exists() {
        let hint = "mount it as systemd does: mkdir -p /dev/mqueue && mount -t mqueue mqueue /dev/mqueue (scripts/setup does)";
        return fail("ls /dev/mqueue on the host", "the host lists its POSIX queues in /dev/mqueue", "no mqueue mounted there", hint);
    }
    let out = t.run(&["ls", "-a", "/dev/mqueue"]);
    let hint = "mount a new mqueue filesystem on /dev/mqueue inside: it lists the queues of the namespace that mounts it";
    let ok = out.status == Some(0) && !out.stdout.contains(&name);
    drop(queue);
    expect(ok, &out, format!("/dev/mqueue listed without the host's {name}"), hint)
}

/// A System V queue on the host, removed on drop. Its key is in the range
/// scripts/cleanup knows (0x63746cXX, "ctl"), in case the checker dies.
struct SysvQueue {
    id: i32,
}

impl SysvQueue {
    fn create() -> std::io::Result<Self> {
        let base = 0x6374_6c00;
        let mut last = std::io::Error::from_raw_os_error(libc::EEXIST);
        for key in base..base + 0x100 {
            let id = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
            if id >= 0 {
                return Ok(SysvQueue { id });
            }
            last = std::io::Error::last_os_error();
        }
        Err(last)
    }
}

impl Drop for SysvQueue {
    fn drop(&mut self) {
        unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// A POSIX queue on the host, unlinked on drop.
struct PosixQueue {
    path: std::ffi::CString,
}

impl PosixQueue {
    fn create(name: &str) -> std::io::Result<Self> {
        let path = std::ffi::CString::new(format!("/{name}")).map_err(std::io::Error::other)?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
        // libc directly: mq_open is variadic (mode, attr) like open(2).
        let queue = unsafe { libc::mq_open(path.as_ptr(), flags, 0o600 as libc::mode_t, std::ptr::null::<libc::mq_attr>()) };
        if queue < 0 {
            return Err(std::io::Error::last_os_error());
        }
        unsafe { libc::mq_close(queue) };
        Ok(PosixQueue { path })
    }
}

impl Drop for PosixQueue {
    fn drop(&mut self) {
        unsafe { libc::mq_unlink(self.path.as_ptr()) };
    }
}
