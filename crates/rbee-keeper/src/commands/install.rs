//! `rbee install [--system] [--service]`: copy the binaries, create the config and data
//! folders, and optionally run the queen as a systemd service.

use std::path::{Path, PathBuf};

use crate::cli::InstallArgs;
use crate::config::Config;
use crate::error::{Result, fail};

const BINARIES: [&str; 4] = ["rbee", "queen-rbee", "rbee-hive", "llm-worker-rbee"];

const DEFAULT_CONFIG: &str = "\
# rbee configuration; every key is optional.
# queen_url = \"http://127.0.0.1:8080\"
# api_key = \"\"
# default_model = \"file:/path/to/model.gguf\"
# ssh_config = \"/path/to/ssh_config\"

[remote]
# binary_path = \"/opt/rbee/target/release\"
# git_repo_dir = \"/opt/rbee\"
";

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| fail("HOME is not set"))
}

pub fn run(args: &InstallArgs, settings: &Config, queen_url: &str) -> Result<()> {
    let (bin_dir, config_dir, data_dir) = if args.system {
        (
            PathBuf::from("/usr/local/bin"),
            PathBuf::from("/etc/rbee"),
            PathBuf::from("/var/lib/rbee"),
        )
    } else {
        let home = home()?;
        let missing = || fail("HOME is not set; set it, or use --system");
        (
            home.join(".local/bin"),
            rbee_api::dirs::config_dir().ok_or_else(missing)?,
            rbee_api::dirs::data_dir().ok_or_else(missing)?,
        )
    };
    let here = std::env::current_exe()
        .map_err(|e| fail(format!("cannot find this program's location: {e}")))?;
    let source = here.parent().unwrap_or(Path::new("."));
    for dir in [&bin_dir, &config_dir, &data_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    }
    for name in BINARIES {
        let from = source.join(name);
        if !from.is_file() {
            return Err(fail(format!(
                "{} is missing; build everything first with `cargo build --release`",
                from.display()
            )));
        }
        let to = bin_dir.join(name);
        // Copy beside and rename, so a running binary is never half-overwritten.
        let tmp = bin_dir.join(format!(".{name}.new"));
        std::fs::copy(&from, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &to))
            .map_err(|e| fail(format!("cannot install {}: {e}", to.display())))?;
        println!("installed {}", to.display());
    }
    let config = config_dir.join("config.toml");
    if config.exists() {
        println!("kept existing {}", config.display());
    } else {
        // It may come to hold the queen's API key.
        crate::config::write_private(&config, DEFAULT_CONFIG.as_bytes())
            .map_err(|e| fail(format!("cannot write {}: {e}", config.display())))?;
        println!("created {}", config.display());
    }
    println!("data directory {}", data_dir.display());
    if args.service {
        let unit = Unit {
            system: args.system,
            bin_dir: &bin_dir,
            config_dir: &config_dir,
            port: port_of(queen_url)?,
        };
        unit.install(settings)?;
    }
    Ok(())
}

/// The port the service listens on: the configured queen URL's, which must be this machine.
fn port_of(queen_url: &str) -> Result<u16> {
    reqwest::Url::parse(queen_url)
        .ok()
        .filter(|u| matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "0.0.0.0")))
        .and_then(|u| u.port_or_known_default())
        .ok_or_else(|| {
            fail(format!(
                "the configured queen URL {queen_url} is not on this machine; the service runs the queen here, so set queen_url to http://127.0.0.1:<port>"
            ))
        })
}

/// The systemd unit that runs `queen-rbee daemon`.
struct Unit<'a> {
    system: bool,
    bin_dir: &'a Path,
    config_dir: &'a Path,
    port: u16,
}

const SERVICE: &str = "queen-rbee.service";

impl Unit<'_> {
    fn path(&self) -> Result<PathBuf> {
        if self.system {
            return Ok(PathBuf::from("/etc/systemd/system").join(SERVICE));
        }
        let config = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => home()?.join(".config"),
        };
        Ok(config.join("systemd/user").join(SERVICE))
    }

    /// The unit's text; the queen's settings (its key among them) go in an environment file
    /// only its owner can read.
    fn text(&self, environment: &Path) -> String {
        format!(
            "[Unit]\n\
             Description=rbee queen: LLM inference across the machines of a home lab\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             \n\
             [Service]\n\
             {system}\
             EnvironmentFile=-{env}\n\
             ExecStart={bin} daemon --port {port}\n\
             Restart=on-failure\n\
             RestartSec=2\n\
             \n\
             [Install]\n\
             WantedBy={target}\n",
            env = environment.display(),
            // A system service runs as the user who installed it (its ssh keys are theirs),
            // with the system's data directory.
            system = if self.system {
                let user = std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "root".into());
                format!("User={user}\nEnvironment=RBEE_QUEEN_DATA_DIR=/var/lib/rbee\n")
            } else {
                String::new()
            },
            bin = self.bin_dir.join("queen-rbee").display(),
            port = self.port,
            target = if self.system {
                "multi-user.target"
            } else {
                "default.target"
            },
        )
    }

    fn install(&self, config: &Config) -> Result<()> {
        let environment = self.config_dir.join("queen.env");
        let mut vars = String::from("# Read by the queen-rbee service (rbee install --service).\n");
        if let Some(key) = &config.api_key {
            vars.push_str(&format!("RBEE_QUEEN_API_KEY={key}\n"));
        }
        if let Some(ssh) = &config.ssh_config {
            vars.push_str(&format!("RBEE_QUEEN_SSH_CONFIG={}\n", ssh.display()));
        }
        if let Some(path) = &config.remote.binary_path {
            vars.push_str(&format!("RBEE_QUEEN_REMOTE_BINARY_PATH={path}\n"));
        }
        // Written beside and renamed over, so a reinstall replaces it and it is never
        // readable by others, even for a moment.
        let fresh = self.config_dir.join(".queen.env.new");
        let _ = std::fs::remove_file(&fresh);
        crate::config::write_private(&fresh, vars.as_bytes())
            .and_then(|()| std::fs::rename(&fresh, &environment))
            .map_err(|e| fail(format!("cannot write {}: {e}", environment.display())))?;
        let unit = self.path()?;
        if let Some(dir) = unit.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        std::fs::write(&unit, self.text(&environment))
            .map_err(|e| fail(format!("cannot write {}: {e}", unit.display())))?;
        println!("wrote {}", unit.display());
        let scope: &[&str] = if self.system { &[] } else { &["--user"] };
        let enable = |args: &[&str]| -> Result<()> {
            let mut cmd = std::process::Command::new("systemctl");
            cmd.args(scope).args(args);
            let out = cmd.output().map_err(|e| {
                fail(format!(
                    "cannot run systemctl ({e}): the unit is written; on a machine without systemd, run `{} daemon --port {}` another way",
                    self.bin_dir.join("queen-rbee").display(),
                    self.port
                ))
            })?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                return Err(fail(format!(
                    "`systemctl {} {}` failed: {}",
                    scope.join(" "),
                    args.join(" "),
                    why.trim()
                )));
            }
            Ok(())
        };
        enable(&["daemon-reload"])?;
        enable(&["enable", "--now", SERVICE])?;
        println!(
            "queen-rbee runs as a service on port {} (status: systemctl {}status {SERVICE})",
            self.port,
            if self.system { "" } else { "--user " }
        );
        if !self.system {
            println!(
                "to keep it running after you log out: loginctl enable-linger {}",
                std::env::var("USER").unwrap_or_else(|_| "$USER".into())
            );
        }
        Ok(())
    }
}
