//! Test-only OCI registry fixtures for boxlite's registry client tests and
//! benchmarks. Everything here starts real servers on 127.0.0.1 and talks to
//! nothing else:
//!
//! - [`Registry`]: a `docker-registry serve` (distribution 2.8) child with
//!   anonymous, Basic (htpasswd) or Bearer-token auth, optionally TLS;
//! - [`TokenServer`]: a Docker-Hub-style token endpoint issuing RS256 JWTs;
//! - [`Proxy`]: a byte-counting reverse proxy that injects [`Fault`]s;
//! - [`FakeRegistry`]: canned responses distribution refuses to produce;
//! - [`images`]: layers, configs, manifests, indexes and a [`images::Pusher`].
//!
//! Not for production: no crate outside tests and benches should depend on
//! it. It needs `docker-registry`, `openssl` and `htpasswd` on PATH.

mod certs;
mod fake;
mod http;
pub mod images;
mod proxy;
mod registry;
mod token;
mod util;

pub use fake::{Canned, FakeRegistry};
pub use proxy::{Callback, Fault, Proxy, ProxyHandle, RequestLog};
pub use registry::{Auth, Registry, RegistryBuilder};
pub use token::{REGISTRY_LEEWAY_SECS, TokenServer, TokenServerBuilder};
