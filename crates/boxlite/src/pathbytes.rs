//! Serde for paths that need not be UTF-8: a string when the path is valid UTF-8 (readable),
//! its raw bytes otherwise, so a non-UTF-8 path reaches the supervisor intact.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serializer};

/// How a path is written.
#[derive(Deserialize)]
#[serde(untagged)]
enum Form {
    Text(String),
    Bytes(Vec<u8>),
}

/// Writes `path` as a string, or as its bytes when it is not UTF-8.
pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    match path.to_str() {
        Some(text) => serializer.serialize_str(text),
        None => serializer.collect_seq(path.as_os_str().as_bytes()),
    }
}

/// Reads what [`serialize`] wrote.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    Ok(match Form::deserialize(deserializer)? {
        Form::Text(text) => PathBuf::from(text),
        Form::Bytes(bytes) => PathBuf::from(OsString::from_vec(bytes)),
    })
}

/// The same for an optional path.
pub mod option {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `path` as [`super::serialize`] does, or nothing.
    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match path {
            Some(path) => s.serialize_some(&Wrapped(path)),
            None => s.serialize_none(),
        }
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapper(#[serde(with = "super")] PathBuf);
        Ok(Option::<Wrapper>::deserialize(d)?.map(|w| w.0))
    }

    struct Wrapped<'a>(&'a PathBuf);

    impl serde::Serialize for Wrapped<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(self.0, s)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder(#[serde(with = "super")] PathBuf);

    #[test]
    fn text_and_raw_bytes_round_trip() {
        for path in [
            PathBuf::from("/plain/path"),
            PathBuf::from(OsString::from_vec(b"/odd/\xff\xfe".to_vec())),
        ] {
            let json = serde_json::to_string(&Holder(path.clone())).unwrap();
            let back: Holder = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0, path, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&Holder("/a".into())).unwrap(),
            "\"/a\""
        );
    }
}
