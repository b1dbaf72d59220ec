//! Where boxlite keeps its state when `--home` / `BOXLITE_HOME` do not say.

use std::path::PathBuf;

/// `--home` if given, else `$XDG_DATA_HOME/boxlite`, else `~/.local/share/boxlite`.
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    if let Some(home) = flag {
        return home;
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(data).join("boxlite");
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    user_home.join(".local/share/boxlite")
}
