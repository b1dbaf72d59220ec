//! Who is on the other end of a box's socket: only this user (or root, who can read the
//! home anyway) may talk to a box, told by the kernel (`SO_PEERCRED`), not by a path's
//! permissions alone.

use tokio::net::UnixStream;

/// Whether the peer of `stream` runs as this process's user or as root.
pub fn is_trusted(stream: &UnixStream) -> bool {
    stream.peer_cred().is_ok_and(|cred| trusted_uid(cred.uid()))
}

/// Whether `uid` may talk to this user's boxes.
fn trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn this_user_is_trusted_and_others_are_not() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(is_trusted(&a));
        assert!(trusted_uid(0));
        let me = rustix::process::geteuid().as_raw();
        assert!(trusted_uid(me));
        if me != 65534 {
            assert!(!trusted_uid(65534));
        }
    }
}
