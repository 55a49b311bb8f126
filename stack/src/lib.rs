//! The `edgesense` operator CLI's library: the swarm stack (Prometheus and Alertmanager as swarm
//! services on the attachable overlay network `core-infra`) and the agent container on each node,
//! both through the Docker API with bollard.
//!
//! | module | job |
//! |---|---|
//! | [`assets`] | the shipped Prometheus/Alertmanager files, rendered with the flags |
//! | [`plan`] | the stack as data: configs by content hash, secret, volumes, service specs |
//! | [`up`], [`down`], [`status`], [`render`] | the `stack` subcommands |
//! | [`pki`], [`credentials`] | the fleet CA and certificates; the stack's kept secrets and the agent bundle |
//! | [`node`] | `node run` / `node stop`: the agent container, least privilege |
//! | [`launcher`] | `edgesense launcher`: the global service that keeps each node's agent in the desired state |
//! | [`docker`] | connecting, API version negotiation, swarm manager check |
//! | [`doctor`] | `edgesense doctor`: host, Docker and stack checks with fixes |
//! | [`dashboard`] | `edgesense dashboard`: the cluster page over Prometheus and Alertmanager |

pub mod assets;
pub mod credentials;
pub mod dashboard;
pub mod docker;
pub mod doctor;
pub mod down;
pub mod error;
pub mod http;
pub mod kernel;
pub mod launcher;
pub mod node;
pub mod pki;
pub mod plan;
pub mod progress;
pub mod render;
pub mod rotate;
pub mod secrets;
pub mod status;
pub mod subnet;
pub mod up;

pub use error::{Result, StackError};
