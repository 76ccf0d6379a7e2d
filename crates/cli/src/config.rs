//! The CLI's config file: where the server is and which token to use.
//!
//! `$JDOS_CONFIG`, else `$XDG_CONFIG_HOME/jdos/config.json`, else
//! `~/.config/jdos/config.json`. Written by `jdos dev` and `jdos login` with
//! mode 0600 (it holds a bearer token); read by every client command when
//! `--addr` / `--token` (or `JDOS_ADDR` / `JDOS_TOKEN`) are not given.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The address used when nothing says otherwise: where `jdos dev` listens by default.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7070";

/// Contents of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Server address, e.g. `http://127.0.0.1:7070`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Bearer token `<id>.<secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the config file lives.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("JDOS_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(x).join("jdos").join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .context("cannot find the config file: neither JDOS_CONFIG nor HOME is set")?;
    Ok(PathBuf::from(home)
        .join(".config")
        .join("jdos")
        .join("config.json"))
}

/// Reads the config file; a missing file is an empty config.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "config file {} is not valid: fix or delete it, then run `jdos login` again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
    }
}

/// Writes the config file atomically with mode 0600 (it holds a secret).
pub fn save(path: &Path, cfg: &Config) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        create_private_dir(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(cfg)?;
    {
        let mut f = open_private(&tmp)
            .with_context(|| format!("cannot write config file {}", tmp.display()))?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write config file {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    // `mode` only applies on creation: tighten a file that already existed.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(not(unix))]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(p)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create config directory {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create config directory {}", dir.display()))
}

/// Address and token to use, from flags/env first, then the config file.
/// The file's token is only used with the file's address, so a token is
/// never sent to a server it was not issued by.
pub fn resolve(
    flag_addr: Option<&str>,
    flag_token: Option<&str>,
    file: &Config,
) -> (String, Option<String>) {
    let flag_addr = flag_addr.filter(|a| !a.is_empty());
    let addr = flag_addr
        .map(str::to_string)
        .or_else(|| file.addr.clone())
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let token = match flag_token.filter(|t| !t.is_empty()) {
        Some(t) => Some(t.to_string()),
        None => {
            let same_server = match (flag_addr, &file.addr) {
                (None, _) => true,
                (Some(f), Some(c)) => same_addr(f, c),
                (Some(_), None) => false,
            };
            if same_server {
                file.token.clone()
            } else {
                None
            }
        }
    };
    (addr, token)
}

fn same_addr(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        let s = s.trim().trim_end_matches('/');
        s.strip_prefix("http://").unwrap_or(s)
    }
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("config.json");
        assert_eq!(load(&p).unwrap(), Config::default());
        let cfg = Config {
            addr: Some("http://127.0.0.1:1".into()),
            token: Some("a.b".into()),
        };
        save(&p, &cfg).unwrap();
        assert_eq!(load(&p).unwrap(), cfg);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "not json").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("jdos login"), "{err}");
    }

    #[test]
    fn flags_win_and_file_tokens_stay_with_their_server() {
        let file = Config {
            addr: Some("http://10.0.0.1:7070".into()),
            token: Some("file.tok".into()),
        };
        assert_eq!(
            resolve(None, None, &file),
            ("http://10.0.0.1:7070".into(), Some("file.tok".into()))
        );
        assert_eq!(
            resolve(Some("10.0.0.1:7070"), None, &file),
            ("10.0.0.1:7070".into(), Some("file.tok".into()))
        );
        assert_eq!(
            resolve(Some("http://10.0.0.2:7070"), None, &file),
            ("http://10.0.0.2:7070".into(), None)
        );
        assert_eq!(
            resolve(None, Some("flag.tok"), &file),
            ("http://10.0.0.1:7070".into(), Some("flag.tok".into()))
        );
        assert_eq!(
            resolve(None, None, &Config::default()),
            (DEFAULT_ADDR.into(), None)
        );
    }
}
