//! Downloading one blob into the store: streamed to a partial file while hashed, resumed
//! with `Range` after a broken connection (or a killed process), published only when its
//! size and digest are right.

use bytes::Bytes;
use oci_layers::spec::Descriptor;
use oci_layers::{PartialBlob, Store};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use tokio::sync::mpsc;

use crate::client::{Client, Endpoint, status_error};
use crate::error::{Error, Result};

/// Chunks in flight between the network and the file writer: bounds memory per download
/// (hyper's chunks are at most a few tens of KiB).
const CHANNEL_CHUNKS: usize = 16;

/// What the writer thread is told.
enum Write {
    /// Append these bytes.
    Chunk(Bytes),
    /// The server ignored the range: start the file over.
    Restart,
}

/// How one download went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Downloaded {
    /// Bytes already on disk when it started (a resumed partial).
    pub resumed_from: u64,
    /// Bytes received over the network this time.
    pub received: u64,
    /// Whether the blob was already stored (nothing downloaded).
    pub already_stored: bool,
}

/// Downloads blob `desc` of `repository` from `ep` into `store`; `what` names it in errors
/// ("layer 2/5 (sha256:…)"). `progress` gets the bytes of the blob on disk so far.
pub(crate) async fn download(
    client: &Client,
    ep: &Endpoint,
    repository: &str,
    desc: &Descriptor,
    store: &Store,
    what: &str,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Downloaded> {
    let partial = {
        let (store, digest, size, what) = (
            store.clone(),
            desc.digest.clone(),
            desc.size,
            what.to_string(),
        );
        blocking(move || store.partial_blob(&digest, size, &what)).await??
    };
    let Some(partial) = partial else {
        progress(desc.size);
        return Ok(Downloaded {
            already_stored: true,
            ..Downloaded::default()
        });
    };
    let resumed_from = partial.offset();
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let writer = tokio::task::spawn_blocking(move || write_all(partial, rx));
    let fetched = fetch(
        client,
        ep,
        repository,
        desc,
        what,
        resumed_from,
        &tx,
        progress,
    )
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Error::Invalid(format!("writing {what}: {e}")))?;
    // A write error (disk full) is the cause of a fetch error (channel closed): report it.
    let partial = written?;
    let received = fetched?;
    blocking(move || partial.finish()).await??;
    Ok(Downloaded {
        resumed_from,
        received,
        already_stored: false,
    })
}

/// The writer: appends what arrives until the channel closes; returns the partial blob.
fn write_all(mut partial: PartialBlob, mut rx: mpsc::Receiver<Write>) -> Result<PartialBlob> {
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Write::Chunk(bytes) => partial.write(&bytes)?,
            Write::Restart => partial.restart()?,
        }
    }
    Ok(partial)
}

/// Requests the blob from `offset` on, retrying broken bodies from where they broke;
/// returns the bytes received.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    client: &Client,
    ep: &Endpoint,
    repository: &str,
    desc: &Descriptor,
    what: &str,
    mut offset: u64,
    tx: &mpsc::Sender<Write>,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<u64> {
    let size = desc.size;
    let retry = client.options().retry;
    let closed = || Error::Invalid(format!("writing {what}: the writer stopped"));
    let mut received = 0u64;
    let mut failures = 0u32;
    progress(offset);
    while offset < size {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={offset}-")) {
                headers.insert(header::RANGE, v);
            }
        }
        let path = format!("blobs/{}", desc.digest);
        let mut resp = client
            .get(
                ep,
                repository,
                &path,
                headers,
                &format!("downloading {what}"),
            )
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if range_start(&resp) == Some(offset) => {}
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE
                if offset > 0 =>
            {
                // The range was ignored or refused: start over, without one.
                tx.send(Write::Restart).await.map_err(|_| closed())?;
                offset = 0;
                progress(0);
                if resp.status() != StatusCode::OK {
                    continue;
                }
            }
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(Error::Invalid(format!(
                    "{} has no blob {} ({what}) in {repository}",
                    ep.registry, desc.digest
                )));
            }
            s => return Err(status_error(&format!("downloading {what}"), ep, s, resp).await),
        }
        if let Some(len) = resp.content_length() {
            if offset.saturating_add(len) != size {
                return Err(Error::Invalid(format!(
                    "{} announces {len} bytes for {what} from byte {offset}, but its descriptor \
                     says the blob has {size}; refusing it",
                    ep.host
                )));
            }
        }
        let broken = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let n = chunk.len() as u64;
                    if offset.saturating_add(n) > size {
                        return Err(Error::Invalid(format!(
                            "{} sent more than the {size} bytes the descriptor of {what} says; \
                             refusing it",
                            ep.host
                        )));
                    }
                    tx.send(Write::Chunk(chunk)).await.map_err(|_| closed())?;
                    offset += n;
                    received += n;
                    progress(offset);
                }
                Ok(None) if offset == size => break None,
                Ok(None) => break Some(format!("the body ended at byte {offset} of {size}")),
                Err(e) => break Some(crate::error::chain(&e)),
            }
        };
        if let Some(reason) = broken {
            failures += 1;
            if failures >= retry.attempts {
                return Err(Error::Transport {
                    what: format!("downloading {what} from {}", ep.host),
                    reason: format!("{reason} (after {} tries)", retry.attempts),
                });
            }
            tokio::time::sleep(retry.delay(failures)).await;
        }
    }
    Ok(received)
}

/// The first byte a 206 answer covers (`Content-Range: bytes START-END/TOTAL`).
fn range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("a store task failed: {e}")))
}
