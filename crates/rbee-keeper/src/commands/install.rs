//! `rbee install [--system]`: copy the binaries and create the config and data folders.

use std::path::{Path, PathBuf};

use crate::cli::InstallArgs;
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

pub fn run(args: &InstallArgs) -> Result<()> {
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
    Ok(())
}
