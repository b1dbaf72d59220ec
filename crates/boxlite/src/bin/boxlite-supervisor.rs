//! `boxlite-supervisor`: owns one running box's VM; started by the runtime, not by people.

fn main() -> std::process::ExitCode {
    boxlite::supervisor::main(std::env::args().skip(1))
}
