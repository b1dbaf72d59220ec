//! The blocking API boots a real box too (skipped without a guest kernel, as `boxes.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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
    bx.remove(true).unwrap();
    assert!(rt.list().unwrap().is_empty());
}
