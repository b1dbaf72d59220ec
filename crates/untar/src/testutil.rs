//! A tar archive written header by header, so entries can carry what a well-behaved builder
//! refuses (`..`, absolute names, any owner or device).

use tar::EntryType;

/// One entry's header fields beyond its name and kind.
pub struct Fields<'a> {
    pub link: &'a [u8],
    pub data: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub device: (u32, u32),
}

impl Default for Fields<'_> {
    fn default() -> Self {
        Fields {
            link: b"",
            data: b"",
            mode: 0o644,
            uid: rustix::process::geteuid().as_raw().into(),
            gid: rustix::process::getegid().as_raw().into(),
            device: (0, 0),
        }
    }
}

#[derive(Default)]
pub struct RawTar(Vec<u8>);

impl RawTar {
    pub fn with(&mut self, name: &[u8], kind: EntryType, f: Fields<'_>) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..f.link.len()].copy_from_slice(f.link);
        h.set_entry_type(kind);
        h.set_mode(f.mode);
        h.set_size(f.data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_uid(f.uid);
        h.set_gid(f.gid);
        h.set_device_major(f.device.0).unwrap();
        h.set_device_minor(f.device.1).unwrap();
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(f.data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    pub fn entry(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: &[u8],
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        self.with(
            name,
            kind,
            Fields {
                link,
                data,
                mode,
                ..Fields::default()
            },
        )
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), EntryType::Regular, b"", data, 0o644)
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}
