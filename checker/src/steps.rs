//! The chapters, in order, and where their code lives.

use std::path::{Path, PathBuf};

pub struct Step {
    /// 1 for "01-uts".
    pub number: u8,
    /// The folder name in solutions/ and steps/, and the solution's binary.
    pub name: &'static str,
    /// What the step adds, for `list`.
    pub adds: &'static str,
}

pub const STEPS: &[Step] = &[
    Step { number: 1, name: "01-uts", adds: "UTS namespace: own hostname" },
    Step { number: 2, name: "02-pid", adds: "PID namespace: the command is PID 1" },
    Step { number: 3, name: "03-mount-proc", adds: "mount namespace, private propagation, fresh /proc" },
    Step { number: 4, name: "04-ipc", adds: "IPC namespace: System V and POSIX queues" },
    Step { number: 5, name: "05-userns-mapping", adds: "user namespace: root inside, you outside (rootless)" },
    Step { number: 6, name: "06-pivot-root", adds: "own root filesystem: pivot_root, /proc, /dev" },
    Step { number: 7, name: "07-netns-veth", adds: "network namespace, veth pair over netlink" },
    Step { number: 8, name: "08-cgroups", adds: "memory, pids and cpu limits (cgroup v1 and v2)" },
    Step { number: 9, name: "09-mini-docker", adds: "everything behind a docker-like CLI" },
    Step { number: 10, name: "10-hardening", adds: "capabilities, no_new_privs, seccomp, masked paths; the escape suite" },
];

impl Step {
    /// Finds a step by "3", "03" or "03-mount-proc".
    pub fn find(key: &str) -> Option<&'static Step> {
        let number: Option<u8> = key.split('-').next().and_then(|n| n.parse().ok());
        STEPS.iter().find(|s| s.name == key || Some(s.number) == number)
    }

    pub fn previous(&self) -> Option<&'static Step> {
        STEPS.iter().find(|s| s.number + 1 == self.number)
    }

    pub fn solution_dir(&self) -> PathBuf {
        workspace_root().join("solutions").join(self.name)
    }

    pub fn skeleton_dir(&self) -> PathBuf {
        workspace_root().join("steps").join(self.name)
    }

    /// Whether this chapter has been written yet.
    pub fn exists(&self) -> bool {
        self.solution_dir().join("Cargo.toml").is_file()
    }

    pub fn solution_package(&self) -> String {
        format!("solution-{}", self.name)
    }

    pub fn skeleton_package(&self) -> String {
        format!("step-{}", self.name)
    }

    /// The solution's binary is named after its folder, but the last
    /// one's: that is `mini-docker`, the finished engine. A student's gets a
    /// `step-` prefix so both can sit in target/release side by side.
    pub fn solution_binary(&self) -> &'static str {
        if self.number == LAST { "mini-docker" } else { self.name }
    }

    /// Whether its checks run the escape kit (chapter 10 on).
    pub fn needs_escape_kit(&self) -> bool {
        self.number >= 10
    }

    pub fn skeleton_binary(&self) -> String {
        format!("step-{}", self.name)
    }
}

/// The last chapter, whose solution is the finished mini-docker.
pub const LAST: u8 = 10;

pub fn existing() -> impl Iterator<Item = &'static Step> {
    STEPS.iter().filter(|s| s.exists())
}

/// The workspace this checker was built in.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the checker lives inside the workspace")
}

pub fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    target.unwrap_or_else(|| workspace_root().join("target")).join("release")
}
