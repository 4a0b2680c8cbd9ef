//! The daemons' configuration file: a table of rbee's `config.toml` (`[queen]` for
//! queen-rbee, `[hive]` for rbee-hive), found as `rbee` finds that file — `--config`, else
//! `$RBEE_CONFIG`, else `~/.config/rbee/config.toml`, else `/etc/rbee/config.toml`.
//!
//! Every flag of the daemon is a key, spelled as the flag (`idle-timeout` or
//! `idle_timeout`), with the value it would take (`"5m"`, `8080`, `true`). A flag given on
//! the command line wins over its environment variable, which wins over the file, which
//! wins over the built-in default.
//!
//! ```toml
//! [hive]
//! idle-timeout = "30m"
//! memory-limit-mb = 8192
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

/// The flag (on the daemon's subcommand) naming the file.
const CONFIG_FLAG: &str = "config";

/// Why the daemon's settings could not be read; each is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("configuration file {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {}", .path.display(), .source.message())]
    NotToml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: `{table}` must be a table", .path.display())]
    NotATable { path: PathBuf, table: String },
    /// A key of the table that is no flag, or a value the flag refuses.
    #[error("{}: [{table}] {problem}", .path.display())]
    Setting {
        path: PathBuf,
        table: String,
        problem: String,
    },
    /// The flags parsed but do not make a command (clap's first line).
    #[error("{0}")]
    Command(String),
}

/// Parses this process's command line as `C`, with the `table` of the configuration file
/// filling every flag neither the command line nor the environment sets. `--help` and
/// `--version` print and exit as usual; a bad file or value is the error (one line).
pub fn parse<C: CommandFactory + FromArgMatches>(table: &str) -> Result<C, ConfigFileError> {
    parse_from(std::env::args_os().collect(), table)
}

/// [`parse`] for the given command line (the program name first).
pub fn parse_from<C: CommandFactory + FromArgMatches>(
    mut args: Vec<OsString>,
    table: &str,
) -> Result<C, ConfigFileError> {
    let command = C::command();
    // `--help`, `--version` and a bad flag end here, as clap has them; a required flag may
    // still come from the file.
    let matches = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => command
            .clone()
            .ignore_errors(true)
            .try_get_matches_from(&args)
            .unwrap_or_else(|e| e.exit()),
        Err(e) => e.exit(),
    };
    let (flags, matched) = deepest(&command, &matches);
    let reads_a_file = flags
        .get_arguments()
        .any(|a| a.get_id().as_str() == CONFIG_FLAG);
    let path = match reads_a_file {
        true => locate(matched.try_get_one::<PathBuf>(CONFIG_FLAG).ok().flatten())?,
        false => None,
    };
    if let Some(path) = &path {
        args.extend(settings(path, table, flags, matched)?);
    }
    let matches = match command.try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => e.exit(),
        // The command line alone parsed: a value refused now came from the file.
        Err(e) => {
            return Err(ConfigFileError::Setting {
                path: path.unwrap_or_default(),
                table: table.to_owned(),
                problem: first_line(&e.to_string()),
            });
        }
    };
    C::from_arg_matches(&matches).map_err(|e| ConfigFileError::Command(first_line(&e.to_string())))
}

/// The subcommand that was run (the one whose flags the file sets) and its matches.
fn deepest<'a>(
    command: &'a clap::Command,
    matches: &'a ArgMatches,
) -> (&'a clap::Command, &'a ArgMatches) {
    let (mut command, mut matches) = (command, matches);
    while let Some((name, sub)) = matches.subcommand() {
        match command.find_subcommand(name) {
            Some(c) => (command, matches) = (c, sub),
            None => break,
        }
    }
    (command, matches)
}

/// The file named (which must exist), else the first usual one that exists; `rbee` looks
/// for its own settings the same way.
pub fn locate(explicit: Option<&PathBuf>) -> Result<Option<PathBuf>, ConfigFileError> {
    if let Some(path) = explicit {
        if !path.is_file() {
            return Err(ConfigFileError::Missing(path.to_owned()));
        }
        return Ok(Some(path.to_owned()));
    }
    Ok(rbee_api::dirs::config_files()
        .into_iter()
        .find(|p| p.is_file()))
}

/// The file's `table` as flags, leaving out those the command line or environment set.
fn settings(
    path: &Path,
    table: &str,
    command: &clap::Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, ConfigFileError> {
    let at = |problem: String| ConfigFileError::Setting {
        path: path.to_owned(),
        table: table.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let doc: toml::Table = toml::from_str(&text).map_err(|source| ConfigFileError::NotToml {
        path: path.to_owned(),
        source,
    })?;
    let Some(section) = doc.get(table) else {
        return Ok(Vec::new());
    };
    let section = section
        .as_table()
        .ok_or_else(|| ConfigFileError::NotATable {
            path: path.to_owned(),
            table: table.to_owned(),
        })?;
    let mut flags = Vec::new();
    for (key, value) in section {
        let long = key.replace('_', "-");
        let arg = (command.get_arguments())
            .find(|a| a.get_long() == Some(long.as_str()) && long != CONFIG_FLAG)
            .ok_or_else(|| {
                at(format!(
                    "`{key}` is not a setting; the settings are the flags of `{} --help`: {}",
                    command.get_name(),
                    known(command)
                ))
            })?;
        let set_elsewhere = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_elsewhere {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let value = match value {
            toml::Value::Boolean(on) if !takes_value => {
                if *on {
                    flags.push(OsString::from(format!("--{long}")));
                }
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(at(format!(
                    "`{key}` must be a string, number or boolean, not {}",
                    other.type_str()
                )));
            }
        };
        if !takes_value {
            return Err(at(format!("`{key}` is a switch: write true or false")));
        }
        flags.push(OsString::from(format!("--{long}={value}")));
    }
    Ok(flags)
}

/// The keys a table may hold.
fn known(command: &clap::Command) -> String {
    (command.get_arguments())
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, CONFIG_FLAG | "help" | "version"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A clap message's first line, without its `error: ` prefix.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}
