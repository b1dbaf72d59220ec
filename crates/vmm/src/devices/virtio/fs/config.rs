//! The tag the guest mounts the file system by, and the configuration space that carries it.

use crate::error::{Error, Result};

/// Bytes of `virtio_fs_config.tag`: the longest tag.
pub const TAG_LEN: usize = 36;
/// Request queues: one, as virtiofsd serves (it has one worker per queue, and Linux's
/// virtio_fs sends every request through the first request queue anyway).
pub const NUM_REQUEST_QUEUES: u32 = 1;

/// Checks that `tag` can be a virtio-fs tag: 1..=36 bytes of UTF-8, none of them NUL (the
/// guest reads the tag up to the first NUL, so one inside would silently shorten it).
pub fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() {
        return Err(Error::Config("a virtio-fs tag cannot be empty".into()));
    }
    if tag.len() > TAG_LEN {
        return Err(Error::Config(format!(
            "virtio-fs tag {tag:?} is {} bytes; at most {TAG_LEN}",
            tag.len()
        )));
    }
    if tag.contains('\0') {
        return Err(Error::Config(format!(
            "virtio-fs tag {tag:?} contains a NUL byte"
        )));
    }
    Ok(())
}

/// `struct virtio_fs_config`: the tag, NUL-padded (not terminated when it fills the field),
/// then the number of request queues, little-endian.
pub fn config_space(tag: &str) -> Vec<u8> {
    let mut config = vec![0u8; TAG_LEN];
    let n = tag.len().min(TAG_LEN);
    config[..n].copy_from_slice(&tag.as_bytes()[..n]);
    config.extend_from_slice(&NUM_REQUEST_QUEUES.to_le_bytes());
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_one_to_36_bytes_without_nul() {
        assert!(check_tag("rootfs").is_ok());
        assert!(check_tag(&"a".repeat(36)).is_ok());
        let long = check_tag(&"a".repeat(37)).unwrap_err().to_string();
        assert!(long.contains("37 bytes; at most 36"), "{long}");
        assert!(check_tag("").unwrap_err().to_string().contains("empty"));
        assert!(check_tag("a\0b").unwrap_err().to_string().contains("NUL"));
        // Bytes, not characters: 12 three-byte characters fill the field.
        assert!(check_tag(&"語".repeat(12)).is_ok());
        assert!(check_tag(&"語".repeat(13)).is_err());
    }

    #[test]
    fn config_space_is_the_padded_tag_then_one_request_queue() {
        let c = config_space("data");
        assert_eq!(c.len(), 40);
        assert_eq!(&c[..4], b"data");
        assert!(c[4..36].iter().all(|&b| b == 0));
        assert_eq!(&c[36..], &1u32.to_le_bytes());
        let full = "x".repeat(36);
        assert_eq!(&config_space(&full)[..36], full.as_bytes());
    }
}
