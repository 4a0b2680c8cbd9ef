//! Finding rbee's processes without searching by name across the machine: namespaces share
//! one PID space, so a process is attributed to a host by its network namespace, and to the
//! suite by a tag in its environment ([`TAG`]) that every process the suite starts, and
//! everything those start, inherits — even a daemon that detaches and is adopted by init.

use std::process::Command;

pub use rbee_testkit::alive;

/// A running process: its PID and program name (the first word of its command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub program: String,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.program, self.pid)
    }
}

/// The program a PID runs, `None` when it is gone or a zombie.
pub fn program(pid: u32) -> Option<String> {
    if !alive(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|b| *b == 0).next()?;
    let first = String::from_utf8_lossy(first);
    let name = first.rsplit('/').next().unwrap_or(&first);
    Some(name.split_whitespace().next().unwrap_or(name).to_owned())
}

fn described(pids: impl IntoIterator<Item = u32>) -> Vec<Process> {
    pids.into_iter()
        .filter_map(|pid| program(pid).map(|program| Process { pid, program }))
        .collect()
}

/// Every live process in network namespace `ns`.
pub fn in_namespace(ns: &str) -> Vec<Process> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return Vec::new();
    };
    described(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok()),
    )
}

/// The environment variable marking the processes of one suite run (never read by rbee).
pub const TAG: &str = "RBEE_ACCEPTANCE_RUN";

/// This run's value of [`TAG`].
pub fn tag_value() -> String {
    std::process::id().to_string()
}

/// Every live process carrying this run's tag, except this one.
pub fn tagged() -> Vec<Process> {
    let wanted = format!("{TAG}={}", tag_value());
    let me = std::process::id();
    let pids = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()))
        });
    described(pids)
}

/// Processes that belong to rbee (anything but the hosts' sshd and its sessions).
pub fn rbee_only(processes: Vec<Process>) -> Vec<Process> {
    processes
        .into_iter()
        .filter(|p| {
            ["rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"].contains(&p.program.as_str())
        })
        .collect()
}
