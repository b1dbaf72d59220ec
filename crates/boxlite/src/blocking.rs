//! The runtime for callers without an async runtime: the same API, each call blocking on a
//! small tokio runtime of its own. Don't call it from inside an async runtime (tokio refuses
//! to block there); use the async API instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::copy::CopyOutReport;
use crate::error::{Error, Result};
use crate::execution::{ExitStatus, Output, Signal};
use crate::images::{GcReport, Image, ImageInfo, UnpackReport};
use crate::info::{BoxInfo, HostInfo};
use crate::litebox::{Metrics, RemoveMode};
use crate::options::{BoxCommand, BoxOptions, RuntimeOptions};

/// A blocking [`crate::runtime::Runtime`].
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: crate::runtime::Runtime,
    tokio: Arc<tokio::runtime::Runtime>,
}

/// A blocking [`crate::litebox::LiteBox`].
#[derive(Debug)]
pub struct LiteBox {
    inner: crate::litebox::LiteBox,
    tokio: Arc<tokio::runtime::Runtime>,
}

/// A blocking [`crate::execution::Execution`]: its streams are `std::io` readers and writers.
#[derive(Debug)]
pub struct Execution {
    /// The command's stdin; drop it for EOF.
    pub stdin: Option<ExecStdin>,
    /// The command's stdout; with a tty, all its output.
    pub stdout: Option<ExecOutput>,
    /// The command's stderr; empty with a tty.
    pub stderr: Option<ExecOutput>,
    inner: crate::execution::Execution,
    tokio: Arc<tokio::runtime::Runtime>,
}

/// A blocking command's stdin (`std::io::Write`).
#[derive(Debug)]
pub struct ExecStdin {
    inner: crate::execution::ExecStdin,
    tokio: Arc<tokio::runtime::Runtime>,
}

/// A blocking command's stdout or stderr (`std::io::Read`).
#[derive(Debug)]
pub struct ExecOutput {
    inner: crate::execution::ExecOutput,
    tokio: Arc<tokio::runtime::Runtime>,
}

impl std::io::Write for ExecStdin {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncWriteExt;
        self.tokio.block_on(self.inner.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.tokio.block_on(self.inner.flush())
    }
}

impl std::io::Read for ExecOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        self.tokio.block_on(self.inner.read(buf))
    }
}

impl Runtime {
    /// Opens (creating if needed) the runtime state in `options.home`.
    pub fn open(options: RuntimeOptions) -> Result<Runtime> {
        // Two workers: an execution's streams and its control messages move concurrently.
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the threads of", "the runtime", e))?;
        Ok(Runtime {
            inner: crate::runtime::Runtime::open(options)?,
            tokio: Arc::new(tokio),
        })
    }

    /// The async runtime this wraps.
    pub fn as_async(&self) -> &crate::runtime::Runtime {
        &self.inner
    }

    /// See [`crate::runtime::Runtime::create`].
    pub fn create(&self, options: BoxOptions) -> Result<LiteBox> {
        let inner = self.tokio.block_on(self.inner.create(options))?;
        Ok(self.wrap(inner))
    }

    /// See [`crate::runtime::Runtime::get`].
    pub fn get(&self, key: &str) -> Result<LiteBox> {
        let inner = self.tokio.block_on(self.inner.get(key))?;
        Ok(self.wrap(inner))
    }

    /// See [`crate::runtime::Runtime::list`].
    pub fn list(&self) -> Result<Vec<BoxInfo>> {
        self.tokio.block_on(self.inner.list())
    }

    /// See [`crate::runtime::Runtime::remove`].
    pub fn remove(&self, key: &str, mode: RemoveMode) -> Result<()> {
        self.tokio.block_on(self.inner.remove(key, mode))
    }

    /// See [`crate::runtime::Runtime::host_info`].
    pub fn host_info(&self) -> HostInfo {
        self.inner.host_info()
    }

    /// See [`crate::runtime::Runtime::import_image`].
    pub fn import_image(&self, path: &Path, name: Option<&str>) -> Result<ImageInfo> {
        self.inner.import_image(path, name)
    }

    /// See [`crate::runtime::Runtime::images`].
    pub fn images(&self) -> Result<Vec<ImageInfo>> {
        self.inner.images()
    }

    /// See [`crate::runtime::Runtime::pull`].
    pub fn pull(&self, reference: &str, options: crate::PullOptions) -> Result<crate::Pulled> {
        self.tokio.block_on(self.inner.pull(reference, options))
    }

    /// See [`crate::runtime::Runtime::login`].
    pub fn login(&self, registry: &str, credential: crate::Credential) -> Result<String> {
        self.tokio.block_on(self.inner.login(registry, credential))
    }

    /// See [`crate::runtime::Runtime::logout`].
    pub fn logout(&self, registry: &str) -> Result<bool> {
        self.inner.logout(registry)
    }

    /// See [`crate::runtime::Runtime::image`].
    pub fn image(&self, name: &str) -> Result<Image> {
        self.inner.image(name)
    }

    /// See [`crate::runtime::Runtime::unpack_image`].
    pub fn unpack_image(&self, name: &str, dest: &Path) -> Result<UnpackReport> {
        self.inner.unpack_image(name, dest)
    }

    /// See [`crate::runtime::Runtime::remove_image`].
    pub fn remove_image(&self, name: &str) -> Result<GcReport> {
        self.inner.remove_image(name)
    }

    fn wrap(&self, inner: crate::litebox::LiteBox) -> LiteBox {
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

    /// See [`crate::litebox::LiteBox::info`].
    pub fn info(&self) -> Result<BoxInfo> {
        self.tokio.block_on(self.inner.info())
    }

    /// See [`crate::litebox::LiteBox::start`].
    pub fn start(&self) -> Result<()> {
        self.tokio.block_on(self.inner.start())
    }

    /// See [`crate::litebox::LiteBox::stop`].
    pub fn stop(&self) -> Result<()> {
        self.tokio.block_on(self.inner.stop())
    }

    /// See [`crate::litebox::LiteBox::stop_with_grace`].
    pub fn stop_with_grace(&self, grace: Duration) -> Result<()> {
        self.tokio.block_on(self.inner.stop_with_grace(grace))
    }

    /// See [`crate::litebox::LiteBox::remove`].
    pub fn remove(&self, mode: RemoveMode) -> Result<()> {
        self.tokio.block_on(self.inner.remove(mode))
    }

    /// See [`crate::litebox::LiteBox::exec`].
    pub fn exec(&self, command: BoxCommand) -> Result<Execution> {
        let mut inner = self.tokio.block_on(self.inner.exec(command))?;
        let tokio = &self.tokio;
        Ok(Execution {
            stdin: inner.stdin.take().map(|inner| ExecStdin {
                inner,
                tokio: tokio.clone(),
            }),
            stdout: inner.stdout.take().map(|inner| ExecOutput {
                inner,
                tokio: tokio.clone(),
            }),
            stderr: inner.stderr.take().map(|inner| ExecOutput {
                inner,
                tokio: tokio.clone(),
            }),
            inner,
            tokio: tokio.clone(),
        })
    }

    /// Runs `command` to its end with no stdin, collecting its output.
    pub fn run(&self, command: BoxCommand) -> Result<Output> {
        self.tokio
            .block_on(async { self.inner.exec(command).await?.output().await })
    }

    /// See [`crate::litebox::LiteBox::copy_in`].
    pub fn copy_in(&self, src: &Path, dest: &str) -> Result<()> {
        self.tokio.block_on(self.inner.copy_in(src, dest))
    }

    /// See [`crate::litebox::LiteBox::copy_out`].
    pub fn copy_out(&self, src: &str, dest: &Path) -> Result<CopyOutReport> {
        self.tokio.block_on(self.inner.copy_out(src, dest))
    }

    /// See [`crate::litebox::LiteBox::copy_out_with`].
    pub fn copy_out_with(
        &self,
        src: &str,
        dest: &Path,
        options: &crate::copy::CopyOutOptions,
    ) -> Result<CopyOutReport> {
        self.tokio
            .block_on(self.inner.copy_out_with(src, dest, options))
    }

    /// See [`crate::litebox::LiteBox::metrics`].
    pub fn metrics(&self) -> Result<Metrics> {
        self.tokio.block_on(self.inner.metrics())
    }
}

impl Execution {
    /// The command's pid in the box.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// See [`crate::execution::Execution::wait`].
    pub fn wait(&self) -> Result<ExitStatus> {
        self.tokio.block_on(self.inner.wait())
    }

    /// See [`crate::execution::Execution::wait_timeout`].
    pub fn wait_timeout(&self, deadline: Duration) -> Result<Option<ExitStatus>> {
        self.tokio.block_on(self.inner.wait_timeout(deadline))
    }

    /// See [`crate::execution::Execution::try_wait`].
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// See [`crate::execution::Execution::signal`].
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.tokio.block_on(self.inner.signal(signal))
    }

    /// See [`crate::execution::Execution::kill`].
    pub fn kill(&self) -> Result<()> {
        self.tokio.block_on(self.inner.kill())
    }

    /// See [`crate::execution::Execution::resize_tty`].
    pub fn resize_tty(&self, rows: u16, cols: u16) -> Result<()> {
        self.tokio.block_on(self.inner.resize_tty(rows, cols))
    }
}
