//! What a guest that writes without end can grow on the host: its console log stays within
//! twice the configured limit, whether it writes to the serial console or as the box's main
//! command (real boxes under QEMU).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::Fixture;

/// The console log limit of the test's runtime.
const LIMIT: u64 = 256 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_log_is_capped_and_rotated_once() {
    let Some(fx) = Fixture::new() else { return };
    let mut options = fx.options();
    options.console_log_limit = LIMIT;
    let rt = boxlite::Runtime::open(options).unwrap();
    let mut box_options = support::named("chatty");
    // The main command's output goes to the console log (1.3 MB of it), then the guest's
    // serial console (another 0.6 MB) ends it.
    box_options.command = vec![
        "sh".into(),
        "-c".into(),
        "seq 1 200000; echo main-done; seq 500001 600000 > /dev/console".into(),
    ];
    let bx = rt.create(box_options).await.unwrap();
    bx.start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while bx.info().await.unwrap().state.is_active() {
        assert!(std::time::Instant::now() < deadline, "the box did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = bx.console_logs();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let sizes: Vec<u64> = logs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&s| s <= LIMIT), "{sizes:?}");
    assert_eq!(sizes[0], LIMIT, "{sizes:?}");
    // The newest output is what is kept: the end of the serial flood (its last lines may
    // still be in the guest's UART when the box powers off).
    let current = std::fs::read_to_string(&logs[1]).unwrap();
    let tail = &current[current.len().saturating_sub(300)..];
    assert!(current.contains("\n5999"), "{tail}");
    assert!(!bx.console_log().with_extension("log.2").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_layer_past_the_unpack_limit_is_refused_at_create() {
    let Some(fx) = Fixture::new() else { return };
    let mut options = fx.options();
    // The test image's one layer unpacks to several MB (a shell and coreutils).
    options.max_layer_bytes = 256 << 10;
    let rt = boxlite::Runtime::open(options).unwrap();
    let err = rt.create(support::named("bomb")).await.unwrap_err();
    assert!(err.to_string().contains("unpacks to more than"), "{err}");
    assert!(rt.list().await.unwrap().is_empty());
    // Within the default limit the same image makes a box.
    fx.runtime().create(support::named("fine")).await.unwrap();
}
