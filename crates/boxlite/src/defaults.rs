//! The image's run config as the defaults a docker user expects, under the box's and the
//! command's own settings.

use oci_layers::spec::RunConfig;

use crate::options::{BoxCommand, BoxOptions};

/// Puts the image's environment, working directory and user under the box's own.
pub fn apply_image(options: &mut BoxOptions, image: &RunConfig) {
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    merge_env(&mut env, &options.env);
    options.env = env;
    if options.working_dir.is_none() && !image.working_dir.is_empty() {
        options.working_dir = Some(image.working_dir.clone());
    }
    if options.user.is_none() && !image.user.is_empty() {
        options.user = Some(image.user.clone());
    }
}

/// The image's default command: its entrypoint followed by its cmd.
pub fn image_command(image: &RunConfig) -> Vec<String> {
    let mut argv = image.entrypoint.clone().unwrap_or_default();
    argv.extend(image.cmd.clone().unwrap_or_default());
    argv
}

/// The argv an `exec` runs: its own, or the image's default command when it has none.
pub fn command_argv(command: &BoxCommand, image: &RunConfig) -> Vec<String> {
    if command.argv.is_empty() {
        image_command(image)
    } else {
        command.argv.clone()
    }
}

/// The argv `run IMAGE [ARGS]` runs, as docker does: the image's entrypoint followed by
/// `args`, or by the image's cmd when there are none.
pub fn run_argv(args: &[String], image: &RunConfig) -> Vec<String> {
    if args.is_empty() {
        return image_command(image);
    }
    let mut argv = image.entrypoint.clone().unwrap_or_default();
    argv.extend(args.iter().cloned());
    argv
}

/// Overlays `over` on `base`: a name set in both takes `over`'s value, in `base`'s position.
pub fn merge_env(base: &mut Vec<(String, String)>, over: &[(String, String)]) {
    for (key, value) in over {
        match base.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => base.push((key.clone(), value.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RunConfig {
        RunConfig {
            env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C".into(), "bogus".into()],
            cmd: Some(vec!["bash".into()]),
            entrypoint: None,
            working_dir: "/srv".into(),
            user: "app".into(),
            ..RunConfig::default()
        }
    }

    #[test]
    fn box_settings_override_the_image() {
        let mut options = BoxOptions::new("img");
        options.env = vec![("LANG".into(), "C.UTF-8".into()), ("X".into(), "1".into())];
        options.user = Some("root".into());
        apply_image(&mut options, &image());
        assert_eq!(
            options.env,
            vec![
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("LANG".into(), "C.UTF-8".into()),
                ("X".into(), "1".into())
            ]
        );
        assert_eq!(options.working_dir.as_deref(), Some("/srv"));
        assert_eq!(options.user.as_deref(), Some("root"));
    }

    #[test]
    fn empty_command_runs_the_image_default() {
        let mut config = image();
        assert_eq!(
            command_argv(&BoxCommand::from_argv(Vec::<String>::new()), &config),
            ["bash"]
        );
        config.entrypoint = Some(vec!["/entry".into(), "-x".into()]);
        assert_eq!(image_command(&config), ["/entry", "-x", "bash"]);
        assert_eq!(command_argv(&BoxCommand::new("ls"), &config), ["ls"]);
        assert_eq!(
            run_argv(&["-y".to_string()], &config),
            ["/entry", "-x", "-y"]
        );
        assert_eq!(run_argv(&[], &config), ["/entry", "-x", "bash"]);
    }
}
