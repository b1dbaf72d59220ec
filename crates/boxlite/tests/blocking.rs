//! The blocking API boots a real box too (skipped without a guest kernel, as `boxes.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};

use boxlite::{BoxCommand, BoxOptions};
use support::{Fixture, IMAGE};

#[test]
fn blocking_runtime_runs_a_command() {
    let Some(fx) = Fixture::new() else { return };
    let rt = boxlite::blocking::Runtime::open(fx.options()).unwrap();
    let bx = rt.create(BoxOptions::new(IMAGE)).unwrap();
    bx.start().unwrap();
    let out = bx.run(BoxCommand::new("echo").arg("blocking")).unwrap();
    assert_eq!(out.stdout, b"blocking\n");
    assert!(out.status.success());
    assert_eq!(rt.list().unwrap().len(), 1);
    assert_eq!(rt.images().unwrap().len(), 1);

    // Streams as std readers and writers; try_wait, then kill from the host.
    let mut cat = bx.exec(BoxCommand::new("cat")).unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    let mut stdout = cat.stdout.take().unwrap();
    stdin.write_all(b"ping\n").unwrap();
    stdin.flush().unwrap();
    let mut echoed = [0u8; 5];
    stdout.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping\n");
    assert!(cat.try_wait().unwrap().is_none());
    let waited = std::time::Instant::now();
    assert!(
        cat.wait_timeout(std::time::Duration::from_millis(200))
            .unwrap()
            .is_none()
    );
    assert!(waited.elapsed() >= std::time::Duration::from_millis(200));
    cat.kill().unwrap();
    assert_eq!(cat.wait().unwrap().signal, Some(9));
    assert!(cat.try_wait().unwrap().is_some());
    bx.remove(boxlite::RemoveMode::Kill).unwrap();
    assert!(rt.list().unwrap().is_empty());
}
