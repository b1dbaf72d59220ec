//! `boxlite-supervisor`: owns one running box's VM; started by the runtime, not by people.

fn main() -> std::process::ExitCode {
    boxlite::supervise()
}
