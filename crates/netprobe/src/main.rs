//! `netprobe`: the network tests' probe, run inside boxes. It must work in a `FROM scratch`
//! image, so it is one static executable (built by `cargo xtask guest`, found through
//! `BOXLITE_NETPROBE`) that needs no libraries, no `/etc/nsswitch.conf` and no resolver of the
//! image: names are looked up in `/etc/hosts` and then by its own DNS query ([`dns`]).
//!
//! Every subcommand prints one machine-readable result line, its first word the outcome
//! (`connected`, `refused`, `timeout`, …) and the rest `key=value` fields, and exits 0 on
//! success, 1 on a failed probe and 2 on bad arguments. Servers print `listening …` once
//! bound, then serve until killed.

mod dns;
mod ifconfig;
mod raw;
mod tcp;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: netprobe COMMAND ARGS
  tcp-echo-server PORT [--max-conns N]     echo every TCP client, forever (or N, one by one)
  udp-echo-server PORT                     echo every UDP datagram, forever
  connect HOST PORT [--send TEXT] [--timeout-ms N]
                                           connected|refused|reset|timeout|unreachable [reply=…]
  udp HOST PORT TEXT [--timeout-ms N]      reply=… or timeout
  resolve NAME [--timeout-ms N]            A records from the first resolv.conf nameserver
  concurrent N HOST PORT [--timeout-ms N]  N connections open at once, each echoing a message
  synflood HOST PORT COUNT                 COUNT raw TCP SYNs from random ports (CAP_NET_RAW)
  bulk HOST PORT BYTES [--timeout-ms N]    send BYTES zeros, print bytes_per_s
  connects N HOST PORT [--timeout-ms N]    N sequential connect+close, print total_ms
  ifconfig                                 interfaces, addresses, MTU, flags, default route";

/// The default time limit of one network operation.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A probe's failure: printed as its result line, exit status 1.
pub struct Failed(pub String);

/// What a subcommand returns: its success line, or the failure line.
pub type Outcome = Result<String, Failed>;

/// The positional arguments and the options shared by the subcommands.
struct Args {
    words: Vec<String>,
    send: Option<String>,
    timeout: Duration,
    max_conns: Option<usize>,
}

fn parse(argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        words: Vec::new(),
        send: None,
        timeout: DEFAULT_TIMEOUT,
        max_conns: None,
    };
    let mut argv = argv.peekable();
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--send" => args.send = Some(argv.next().ok_or("--send needs TEXT")?),
            "--timeout-ms" => {
                let ms = argv.next().ok_or("--timeout-ms needs N")?;
                let ms: u64 = number(&ms, "--timeout-ms")?;
                args.timeout = Duration::from_millis(ms.max(1));
            }
            "--max-conns" => {
                let n = argv.next().ok_or("--max-conns needs N")?;
                args.max_conns = Some(number(&n, "--max-conns")?);
            }
            _ => args.words.push(arg),
        }
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what}: {s:?} is not a number"))
}

/// Resolves `host` (an IP address, a name in `/etc/hosts`, or one DNS answers) and `port`.
fn target(host: &str, port: &str, timeout: Duration) -> Result<SocketAddr, Failed> {
    let port: u16 = number(port, "PORT").map_err(Failed)?;
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => dns::lookup(host, timeout)?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn run(args: &Args) -> Result<Outcome, String> {
    let w: Vec<&str> = args.words.iter().map(String::as_str).collect();
    let t = args.timeout;
    Ok(match w.as_slice() {
        ["tcp-echo-server", port] => tcp::echo_server(number(port, "PORT")?, args.max_conns),
        ["udp-echo-server", port] => udp::echo_server(number(port, "PORT")?),
        ["connect", host, port] => {
            target(host, port, t).and_then(|to| tcp::connect(to, args.send.as_deref(), t))
        }
        ["udp", host, port, text] => target(host, port, t).and_then(|to| udp::ask(to, text, t)),
        ["resolve", name] => dns::resolve(name, t),
        ["concurrent", n, host, port] => {
            let n = number(n, "N")?;
            target(host, port, t).and_then(|to| tcp::concurrent(n, to, t))
        }
        ["synflood", host, port, count] => {
            let count = number(count, "COUNT")?;
            target(host, port, t).and_then(|to| raw::synflood(to, count))
        }
        ["bulk", host, port, bytes] => {
            let bytes = number(bytes, "BYTES")?;
            target(host, port, t).and_then(|to| tcp::bulk(to, bytes, t))
        }
        ["connects", n, host, port] => {
            let n = number(n, "N")?;
            target(host, port, t).and_then(|to| tcp::connects(n, to, t))
        }
        ["ifconfig"] => ifconfig::show(),
        _ => return Err("unknown command or wrong arguments".into()),
    })
}

fn main() -> ExitCode {
    let outcome = parse(std::env::args().skip(1)).and_then(|args| run(&args));
    match outcome {
        Ok(Ok(line)) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok(Err(Failed(line))) => {
            println!("{line}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("netprobe: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The result word for a failed socket operation.
fn classify(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset".into(),
        K::TimedOut | K::WouldBlock => "timeout".into(),
        K::HostUnreachable | K::NetworkUnreachable => "unreachable".into(),
        _ => format!("error reason={}", quote(&e.to_string())),
    }
}

/// `text` as one field value: spaces and unprintable bytes escaped, so a line stays one line.
fn quote(text: &str) -> String {
    text.escape_default().to_string().replace(' ', "\\x20")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn options_anywhere_and_positional_words() {
        let argv = ["connect", "--timeout-ms", "250", "h", "80", "--send", "hi"];
        let args = parse(argv.iter().map(|s| s.to_string())).unwrap();
        assert_eq!(args.words, ["connect", "h", "80"]);
        assert_eq!(args.send.as_deref(), Some("hi"));
        assert_eq!(args.timeout, Duration::from_millis(250));
        assert!(parse(["--timeout-ms", "x"].iter().map(|s| s.to_string())).is_err());
        assert_eq!(quote("a b\n"), "a\\x20b\\n");
    }
}
