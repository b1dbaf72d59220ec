//! The runtime for callers without an async runtime: the same API, each call blocking on a
//! small tokio runtime of its own. Don't call it from inside an async runtime (tokio refuses
//! to block there); use the async API instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oci_layers::Store;

use crate::error::{Error, Result};
use crate::execution::Output;
use crate::litebox::Metrics;
use crate::options::{BoxCommand, BoxOptions, RuntimeOptions};
use crate::runtime::{BoxInfo, HostInfo};

/// A blocking [`crate::Runtime`].
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: crate::Runtime,
    tokio: Arc<tokio::runtime::Runtime>,
}

/// A blocking [`crate::LiteBox`].
#[derive(Debug)]
pub struct LiteBox {
    inner: crate::LiteBox,
    tokio: Arc<tokio::runtime::Runtime>,
}

impl Runtime {
    /// Opens (creating if needed) the runtime state in `options.home`.
    pub fn open(options: RuntimeOptions) -> Result<Runtime> {
        // Two workers: an execution's streams and its control messages move concurrently.
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the runtime's threads", e))?;
        Ok(Runtime {
            inner: crate::Runtime::open(options)?,
            tokio: Arc::new(tokio),
        })
    }

    /// The image store.
    pub fn store(&self) -> &Store {
        self.inner.store()
    }

    /// See [`crate::Runtime::create`].
    pub fn create(&self, options: BoxOptions) -> Result<LiteBox> {
        let inner = self.tokio.block_on(self.inner.create(options))?;
        Ok(self.wrap(inner))
    }

    /// See [`crate::Runtime::get`].
    pub fn get(&self, key: &str) -> Result<LiteBox> {
        let inner = self.tokio.block_on(self.inner.get(key))?;
        Ok(self.wrap(inner))
    }

    /// See [`crate::Runtime::list`].
    pub fn list(&self) -> Result<Vec<BoxInfo>> {
        self.tokio.block_on(self.inner.list())
    }

    /// See [`crate::Runtime::remove`].
    pub fn remove(&self, key: &str, force: bool) -> Result<()> {
        self.tokio.block_on(self.inner.remove(key, force))
    }

    /// See [`crate::Runtime::host_info`].
    pub fn host_info(&self) -> HostInfo {
        self.inner.host_info()
    }

    fn wrap(&self, inner: crate::LiteBox) -> LiteBox {
        LiteBox {
            inner,
            tokio: self.tokio.clone(),
        }
    }
}

impl LiteBox {
    /// The box's id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// The box's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// See [`crate::LiteBox::info`].
    pub fn info(&self) -> Result<BoxInfo> {
        self.tokio.block_on(self.inner.info())
    }

    /// See [`crate::LiteBox::start`].
    pub fn start(&self) -> Result<()> {
        self.tokio.block_on(self.inner.start())
    }

    /// See [`crate::LiteBox::stop`].
    pub fn stop(&self) -> Result<()> {
        self.tokio.block_on(self.inner.stop())
    }

    /// See [`crate::LiteBox::stop_with_grace`].
    pub fn stop_with_grace(&self, grace: Duration) -> Result<()> {
        self.tokio.block_on(self.inner.stop_with_grace(grace))
    }

    /// See [`crate::LiteBox::remove`].
    pub fn remove(&self, force: bool) -> Result<()> {
        self.tokio.block_on(self.inner.remove(force))
    }

    /// Runs `command` to its end with no stdin, collecting its output.
    pub fn run(&self, command: BoxCommand) -> Result<Output> {
        self.tokio
            .block_on(async { self.inner.exec(command).await?.output().await })
    }

    /// See [`crate::LiteBox::copy_in`].
    pub fn copy_in(&self, src: &Path, dest: &str) -> Result<()> {
        self.tokio.block_on(self.inner.copy_in(src, dest))
    }

    /// See [`crate::LiteBox::copy_out`].
    pub fn copy_out(&self, src: &str, dest: &Path) -> Result<crate::copy::CopyOutReport> {
        self.tokio.block_on(self.inner.copy_out(src, dest))
    }

    /// See [`crate::LiteBox::metrics`].
    pub fn metrics(&self) -> Result<Metrics> {
        self.tokio.block_on(self.inner.metrics())
    }
}
