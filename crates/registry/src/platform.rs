//! `--platform os/arch[/variant]`, normalised the way docker normalises it.

use oci_layers::spec::Platform;

use crate::error::{Error, Result};

/// Longest platform string accepted: real ones are a few words.
const MAX_PLATFORM_BYTES: usize = 64;

/// Parses `os/arch[/variant]` (`linux/arm64`, `linux/arm/v7`), with the usual aliases
/// (`x86_64` is `amd64`, `aarch64` is `arm64`).
pub fn parse_platform(input: &str) -> Result<Platform> {
    let bad = |reason: &str| Error::InvalidPlatform {
        input: input.chars().take(MAX_PLATFORM_BYTES).collect(),
        reason: reason.to_string(),
    };
    if input.len() > MAX_PLATFORM_BYTES {
        return Err(bad("it is too long"));
    }
    let parts: Vec<&str> = input.split('/').collect();
    let word = |s: &&str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(word) {
        return Err(bad("expected two or three words separated by /"));
    }
    let os = parts[0].to_ascii_lowercase();
    let architecture = match parts[1].to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "i386" | "i686" => "386".to_string(),
        other => other.to_string(),
    };
    let variant = parts.get(2).map(|v| v.to_ascii_lowercase());
    Ok(Platform {
        architecture,
        os,
        variant,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn platforms_parse_and_normalise() {
        let p = parse_platform("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            parse_platform("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            parse_platform("Linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64", ""] {
            let err = parse_platform(bad).unwrap_err().to_string();
            assert!(err.contains("os/arch"), "{bad}: {err}");
        }
    }
}
