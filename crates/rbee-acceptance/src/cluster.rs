//! Compute nodes as network namespaces on a private bridge.
//!
//! The control node is the root namespace, holding the bridge address `10.99.0.1`. Each
//! compute node is a namespace joined to the bridge by a veth pair, with `lo` up, its own
//! address, its own `/etc/hosts` (bind-mounted by `ip netns exec`), hostname (UTS namespace)
//! and `sshd` on port 22. There is no route out: traffic stays on the bridge.
//!
//! Every name starts with [`PREFIX`], so [`sweep`] can remove what an interrupted run left
//! and [`leftovers`] can prove a run left nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::processes::{self, Process};

pub const PREFIX: &str = "rbeetest";
pub const BRIDGE: &str = "rbeetest0";
/// The control node's address on the bridge.
pub const CONTROL_IP: &str = "10.99.0.1";

/// Runs a command that must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command whose failure does not matter (cleanup of what may not exist).
fn try_run(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn our_namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_owned)
        .collect()
}

fn our_links() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

fn our_paths(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every namespace, link, `/etc/netns` entry and temp directory named [`PREFIX`]…,
/// killing what still runs in those namespaces first.
pub fn sweep() {
    for ns in our_namespaces() {
        for p in processes::in_namespace(&ns) {
            try_run("kill", &["-CONT", &p.pid.to_string()]);
            try_run("kill", &["-KILL", &p.pid.to_string()]);
        }
        try_run("ip", &["netns", "del", &ns]);
    }
    for link in our_links() {
        try_run("ip", &["link", "del", &link]);
    }
    for path in our_paths(Path::new("/etc/netns"))
        .into_iter()
        .chain(our_paths(&std::env::temp_dir()))
    {
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// What [`sweep`] would remove, described; empty after a clean run.
pub fn leftovers() -> Vec<String> {
    let mut found: Vec<String> = our_namespaces()
        .into_iter()
        .map(|n| format!("network namespace {n}"))
        .collect();
    found.extend(our_links().into_iter().map(|l| format!("link {l}")));
    found.extend(
        our_paths(Path::new("/etc/netns"))
            .into_iter()
            .chain(our_paths(&std::env::temp_dir()))
            .map(|p| format!("directory {}", p.display())),
    );
    found
}

/// One compute node.
pub struct Host {
    pub name: String,
    pub ip: String,
    /// Its network namespace.
    pub ns: String,
    /// The bridge side of its link (down = the node is cut off).
    pub link: String,
    /// Its own files: `XDG_DATA_HOME` (catalog, models, hive log) is `<home>/data`.
    pub home: PathBuf,
    /// Environment of every SSH session (and so of the hive the queen starts there).
    env: BTreeMap<String, String>,
    sshd: Option<Child>,
    keys: PathBuf,
}

impl Host {
    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data/rbee")
    }

    /// Sets a variable for the sessions (and hives) started from now on; restarts sshd.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_owned(), value.to_owned());
        self.stop_sshd();
        self.start_sshd();
    }

    fn start_sshd(&mut self) {
        let config = self.home.join("sshd_config");
        let set_env: String = self.env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        std::fs::write(
            &config,
            format!(
                "ListenAddress 0.0.0.0\nPort 22\nHostKey {keys}/host_key\nAuthorizedKeysFile {keys}/authorized_keys\n\
                 PidFile none\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSetEnv{set_env}\n",
                keys = self.keys.display()
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "unshare", "--uts", "sh", "-c"])
            .arg(format!(
                "hostname {} && exec /usr/sbin/sshd -D -e -f {}",
                self.name,
                config.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = format!("{}:22", self.ip).parse().unwrap();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd on {} did not listen",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            try_run("kill", &["-TERM", &child.id().to_string()]);
            let _ = child.wait();
        }
    }

    /// rbee's processes running on this node.
    pub fn rbee_processes(&self) -> Vec<Process> {
        processes::rbee_only(processes::in_namespace(&self.ns))
    }

    /// Cuts the node off the bridge, or connects it again.
    pub fn set_link(&self, up: bool) {
        run(
            "ip",
            &["link", "set", &self.link, if up { "up" } else { "down" }],
        );
    }

    /// Runs a shell command inside the node, as its own programs would.
    pub fn exec(&self, script: &str) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The compute nodes of one scenario, torn down on drop.
pub struct Cluster {
    pub hosts: Vec<Host>,
    /// This scenario's directory (keys, homes, logs).
    pub dir: PathBuf,
    /// `ssh -F` configuration that logs into every node as root with the throwaway key.
    pub ssh_config: PathBuf,
}

impl Cluster {
    /// Builds the bridge and one namespace per name, addressed 10.99.0.2, .3, … in order.
    /// No sshd runs until [`Cluster::start_sshd`].
    pub fn build(names: &[&str]) -> Self {
        sweep();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        rbee_testkit::throwaway_keys(&keys);
        let k = keys.display();
        let ssh_config = dir.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host *\n  User root\n  IdentityFile {k}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {k}/known_hosts\n  StrictHostKeyChecking accept-new\n  BatchMode yes\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();

        run("ip", &["link", "add", BRIDGE, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{CONTROL_IP}/24"), "dev", BRIDGE],
        );
        run("ip", &["link", "set", BRIDGE, "up"]);
        let hosts_file: String =
            std::iter::once(format!("127.0.0.1 localhost\n{CONTROL_IP} control\n"))
                .chain(
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| format!("10.99.0.{} {n}\n", i + 2)),
                )
                .collect();

        let mut hosts = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{PREFIX}-{name}");
            let link = format!("{PREFIX}-{}", i + 2);
            let peer = format!("{link}p");
            let ip = format!("10.99.0.{}", i + 2);
            let etc = PathBuf::from("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(etc.join("hosts"), &hosts_file).unwrap();
            run("ip", &["netns", "add", &ns]);
            run(
                "ip",
                &["link", "add", &link, "type", "veth", "peer", "name", &peer],
            );
            run("ip", &["link", "set", &peer, "netns", &ns]);
            run("ip", &["link", "set", &link, "master", BRIDGE, "up"]);
            run("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"]);
            run(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            let home = dir.join(name);
            std::fs::create_dir_all(home.join("data")).unwrap();
            let env = BTreeMap::from([(
                "XDG_DATA_HOME".to_owned(),
                home.join("data").display().to_string(),
            )]);
            hosts.push(Host {
                name: (*name).to_owned(),
                ip,
                ns,
                link,
                home,
                env,
                sshd: None,
                keys: keys.clone(),
            });
        }
        Self {
            hosts,
            dir,
            ssh_config,
        }
    }

    /// Starts every node's sshd, with `env` set in the sessions it opens.
    pub fn start_sshd(&mut self, env: &[(&str, &str)]) {
        for host in &mut self.hosts {
            for (k, v) in env {
                host.env.insert((*k).to_owned(), (*v).to_owned());
            }
            host.start_sshd();
        }
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this cluster"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this cluster"))
    }

    /// rbee processes on any node, by node.
    pub fn rbee_processes(&self) -> Vec<(String, Process)> {
        self.hosts
            .iter()
            .flat_map(|h| h.rbee_processes().into_iter().map(|p| (h.name.clone(), p)))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.stop_sshd();
        }
        sweep();
    }
}
