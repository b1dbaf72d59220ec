//! Where `boxlite` keeps its state: `--home`, `BOXLITE_HOME`, `XDG_DATA_HOME`, `~/.local/share`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Env, Run, blobs_in, boxlite, demo_layout};

/// The image names recorded in the home `home`, read with `--home`.
fn names_in(home: &Path) -> Vec<String> {
    let mut cmd = boxlite();
    cmd.arg("--home").arg(home).args(["image", "ls", "--json"]);
    let json = common::ls_json(&Run::of(cmd));
    json.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn boxlite_home_is_honoured_and_the_flag_beats_it() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    let from_env = env.path("env-home");
    let from_flag = env.path("flag-home");

    let mut cmd = boxlite();
    cmd.env("BOXLITE_HOME", &from_env)
        .args(["image", "import"])
        .arg(&layout);
    Run::of(cmd).ok();
    assert_eq!(names_in(&from_env), ["demo:1"]);
    assert_eq!(blobs_in(&from_env).len(), 4);

    let mut cmd = boxlite();
    cmd.env("BOXLITE_HOME", &from_env)
        .args(["image", "ls", "--json"]);
    assert_eq!(common::ls_json(&Run::of(cmd)).as_array().unwrap().len(), 1);

    // The flag wins over the environment, for reading and for writing.
    let mut cmd = boxlite();
    cmd.env("BOXLITE_HOME", &from_env)
        .arg("--home")
        .arg(&from_flag)
        .args(["image", "ls", "--json"]);
    assert_eq!(common::ls_json(&Run::of(cmd)), serde_json::json!([]));

    let mut cmd = boxlite();
    cmd.env("BOXLITE_HOME", &from_env)
        .args(["image", "import"])
        .arg(&layout)
        .args(["--name", "flagged", "--home"])
        .arg(&from_flag);
    Run::of(cmd).ok();
    assert_eq!(names_in(&from_flag), ["flagged"]);
    assert_eq!(names_in(&from_env), ["demo:1"]);
}

#[test]
fn default_home_follows_xdg_data_home_then_home() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    let user = env.path("user");
    let xdg = env.path("xdg");

    let mut cmd = boxlite();
    cmd.env("HOME", &user)
        .args(["image", "import"])
        .arg(&layout);
    Run::of(cmd).ok();
    assert_eq!(names_in(&user.join(".local/share/boxlite")), ["demo:1"]);

    let mut cmd = boxlite();
    cmd.env("HOME", &user)
        .env("XDG_DATA_HOME", &xdg)
        .args(["image", "import"])
        .arg(&layout)
        .args(["--name", "xdg"]);
    Run::of(cmd).ok();
    assert_eq!(names_in(&xdg.join("boxlite")), ["xdg"]);
    assert_eq!(names_in(&user.join(".local/share/boxlite")), ["demo:1"]);
}

#[test]
fn an_unusable_home_is_reported_by_path() {
    let env = Env::new();
    let file = env.path("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let mut cmd = boxlite();
    cmd.arg("--home").arg(&file).args(["image", "ls"]);
    Run::of(cmd).fails_with(&[file.to_str().unwrap()]);
}
