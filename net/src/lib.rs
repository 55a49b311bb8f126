//! The network pieces the agent and the CLI share: TLS configurations from the fleet's PEM
//! files ([`tls`]) and one HTTP/1.1 client over TCP or TLS with bearer or basic auth
//! ([`client`]), and the headers of the pages a browser loads ([`page`]). No OpenSSL: rustls with ring, so every static musl build stays static.

pub mod client;
pub mod dns;
pub mod page;
pub mod tls;

pub use client::{Auth, Call, Client, Error, Response, Target, CONNECT_TIMEOUT};
pub use rustls;
pub use tokio_rustls;
