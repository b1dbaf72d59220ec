//! Kconfig fragments: parsing them and checking that a resolved `.config` honours them.

use std::collections::HashMap;

use anyhow::{Result, bail};

/// One `CONFIG_X=value` or `# CONFIG_X is not set` line of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub struct Setting {
    /// The symbol, with its `CONFIG_` prefix.
    pub name: String,
    /// The value as written in `.config`; `n` for "is not set".
    pub value: String,
}

/// Reads the settings of a fragment (or of a `.config`), rejecting lines Kconfig would ignore.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            match rest.strip_suffix(" is not set") {
                Some(sym) if is_symbol(sym) => out.push(Setting {
                    name: format!("CONFIG_{sym}"),
                    value: "n".into(),
                }),
                _ => bail!(
                    "{origin}:{}: malformed `# CONFIG_… is not set` line: {line}",
                    i + 1
                ),
            }
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else {
            match line.split_once('=') {
                Some((name, value))
                    if name.strip_prefix("CONFIG_").is_some_and(is_symbol) && !value.is_empty() =>
                {
                    out.push(Setting {
                        name: name.into(),
                        value: value.into(),
                    })
                }
                _ => bail!(
                    "{origin}:{}: expected CONFIG_NAME=value or a comment, got: {line}",
                    i + 1
                ),
            }
        }
    }
    Ok(out)
}

fn is_symbol(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The settings of `wanted` that `resolved` (a full `.config`) does not honour, as messages.
///
/// A symbol absent from `.config` counts as `n`: Kconfig omits symbols whose dependencies
/// are unmet.
pub fn unmet(wanted: &[Setting], resolved: &[Setting]) -> Vec<String> {
    let have: HashMap<&str, &str> = resolved
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_str()))
        .collect();
    wanted
        .iter()
        .filter_map(|w| {
            let got = have.get(w.name.as_str()).copied();
            let effective = got.unwrap_or("n");
            (effective != w.value).then(|| match got {
                None => format!(
                    "{}: asked for {}, but it is absent (its dependencies are not met)",
                    w.name, w.value
                ),
                Some(v) => format!("{}: asked for {}, got {v}", w.name, w.value),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> Setting {
        Setting {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn parses_values_and_not_set_lines() {
        let text =
            "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=64\n";
        assert_eq!(
            parse(text, "f").unwrap(),
            [
                set("CONFIG_A", "y"),
                set("CONFIG_B", "n"),
                set("CONFIG_C", "\"x y\""),
                set("CONFIG_D", "64")
            ]
        );
    }

    #[test]
    fn rejects_lines_kconfig_would_silently_ignore() {
        for bad in [
            "CONFIG_A",
            "A=y",
            "CONFIG_=y",
            "# CONFIG_A is unset",
            "CONFIG_A=",
        ] {
            let err = parse(bad, "frag").unwrap_err().to_string();
            assert!(err.starts_with("frag:1:"), "{bad}: {err}");
        }
    }

    #[test]
    fn reports_every_unmet_setting() {
        let wanted = [
            set("CONFIG_A", "y"),
            set("CONFIG_B", "n"),
            set("CONFIG_C", "y"),
            set("CONFIG_D", "n"),
            set("CONFIG_E", "y"),
        ];
        let resolved = [
            set("CONFIG_A", "y"),
            set("CONFIG_B", "y"),
            set("CONFIG_D", "n"),
            set("CONFIG_E", "n"),
        ];
        assert_eq!(
            unmet(&wanted, &resolved),
            [
                "CONFIG_B: asked for n, got y",
                "CONFIG_C: asked for y, but it is absent (its dependencies are not met)",
                "CONFIG_E: asked for y, got n",
            ]
        );
    }

    #[test]
    fn the_committed_fragment_parses() {
        let path = crate::sh::workspace_root().join(super::super::FRAGMENT);
        let text = std::fs::read_to_string(&path).unwrap();
        let settings = parse(&text, "fragment").unwrap();
        assert!(settings.contains(&set("CONFIG_PVH", "y")));
        assert!(settings.contains(&set("CONFIG_MODULES", "n")));
    }
}
