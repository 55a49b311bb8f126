//! What can go wrong talking to Docker, each with what to do about it.

/// A failure of a stack or node command.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The Docker daemon is not there (socket missing, refused, or unreachable host).
    #[error("cannot reach the Docker daemon at {host}: {detail}\n  is dockerd running? Start it (`systemctl start docker`), or point --docker-host / DOCKER_HOST at it")]
    NoDaemon { host: String, detail: String },

    /// The daemon is not a swarm manager.
    #[error("{0}")]
    NotManager(String),

    /// `core-infra` exists but cannot be used; it is never deleted for you.
    #[error("network \"{name}\" exists but is {what}; edgesense needs an attachable overlay network.\n  Remove it (`docker network rm {name}`, after moving what uses it) or give another name with --network")]
    BadNetwork { name: String, what: String },

    /// A flag or input file is wrong.
    #[error("{0}")]
    Input(String),

    /// A file or command on this host failed.
    #[error("{0}")]
    Io(String),

    /// Waiting for the stack to come up took too long.
    #[error("{0}")]
    Timeout(String),

    /// Any other answer from Docker.
    #[error("Docker: {context}: {source}")]
    Docker {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },
}

pub type Result<T> = std::result::Result<T, StackError>;

/// Adds what was being done to a bollard error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, bollard::errors::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StackError::Docker {
            context: what(),
            source,
        })
    }
}

/// True if `e` is Docker's 404.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
