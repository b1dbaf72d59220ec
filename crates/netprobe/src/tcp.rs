//! TCP probes: the echo server and the clients that connect to it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::{Failed, Outcome, classify, quote};

/// Echoes every client on `port` (all addresses), each on its own thread, forever; with
/// `max`, that many clients one after another, then ends (a server that restarts).
pub fn echo_server(port: u16, max: Option<usize>) -> Outcome {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| Failed(format!("bind-failed {}", classify(&e))))?;
    println!("listening tcp={}", local(&listener));
    if let Some(max) = max {
        let mut served = 0;
        while served < max {
            if let Ok((stream, _)) = listener.accept() {
                echo(stream);
                served += 1;
            }
        }
        return Ok(format!("served connections={served}"));
    }
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                std::thread::spawn(move || echo(stream));
            }
            // A client that went away before accept: keep serving the others.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}

fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Opens a connection within `timeout`.
fn open(to: SocketAddr, timeout: Duration) -> Result<TcpStream, Failed> {
    let stream = TcpStream::connect_timeout(&to, timeout).map_err(|e| Failed(classify(&e)))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects to `to`; with `send`, sends it and reads back as many bytes (an echo).
pub fn connect(to: SocketAddr, send: Option<&str>, timeout: Duration) -> Outcome {
    let mut stream = open(to, timeout)?;
    let Some(text) = send else {
        return Ok("connected".into());
    };
    let reply = exchange(&mut stream, text.as_bytes()).map_err(|(got, e)| {
        Failed(format!(
            "{} reply={}",
            classify(&e),
            quote(&String::from_utf8_lossy(&got))
        ))
    })?;
    Ok(format!(
        "connected reply={}",
        quote(&String::from_utf8_lossy(&reply))
    ))
}

/// Sends `message` and reads until as many bytes came back or the peer closed; on an error,
/// what came back so far.
fn exchange(stream: &mut TcpStream, message: &[u8]) -> Result<Vec<u8>, (Vec<u8>, std::io::Error)> {
    stream.write_all(message).map_err(|e| (Vec::new(), e))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < message.len() {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((got, e)),
        }
    }
    Ok(got)
}

/// Opens `n` connections, all held open at once, then echoes a distinct message on each
/// from its own thread; how many got their message back.
pub fn concurrent(n: usize, to: SocketAddr, timeout: Duration) -> Outcome {
    let mut streams = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for _ in 0..n {
        match open(to, timeout) {
            Ok(s) => streams.push(s),
            Err(Failed(why)) => failures.push(why),
        }
    }
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            std::thread::spawn(move || {
                let message = format!("netprobe-{i}\n");
                exchange(&mut stream, message.as_bytes()).is_ok_and(|r| r == message.as_bytes())
            })
        })
        .collect();
    let completed = threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .filter(|&ok| ok)
        .count();
    let line = format!("completed={completed} of={n}");
    match failures.first() {
        None if completed == n => Ok(line),
        None => Err(Failed(line)),
        Some(first) => Err(Failed(format!(
            "{line} connect_failures={} first_failure={}",
            failures.len(),
            quote(first)
        ))),
    }
}

/// Sends `bytes` zeros (reading back whatever an echo server returns, so neither side
/// blocks), then closes its side; the rate is over the sending.
pub fn bulk(to: SocketAddr, bytes: u64, timeout: Duration) -> Outcome {
    let mut stream = open(to, timeout)?;
    let mut reader = stream.try_clone().map_err(|e| Failed(classify(&e)))?;
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let len = chunk
            .len()
            .min(usize::try_from(bytes - sent).unwrap_or(chunk.len()));
        if let Err(e) = stream.write_all(&chunk[..len]) {
            return Err(Failed(format!("{} sent={sent}", classify(&e))));
        }
        sent += len as u64;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let echoed = drain.join().unwrap_or(0);
    Ok(format!(
        "sent={sent} secs={secs:.3} bytes_per_s={} echoed={echoed}",
        (sent as f64 / secs) as u64
    ))
}

/// Connects and closes `n` times, one after the other; the total time.
pub fn connects(n: usize, to: SocketAddr, timeout: Duration) -> Outcome {
    let started = Instant::now();
    for i in 0..n {
        match open(to, timeout) {
            Ok(stream) => drop(stream),
            Err(Failed(why)) => return Err(Failed(format!("{why} done={i} of={n}"))),
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(format!("done={n} total_ms={ms:.1}"))
}
