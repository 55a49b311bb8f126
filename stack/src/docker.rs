//! Connecting to Docker: `--docker-host`, else `DOCKER_HOST`, else the local socket; the API
//! version is negotiated, because Debian's dockerd (20.10, API 1.41) is older than the client
//! models.

use bollard::{Docker, API_DEFAULT_VERSION};

use crate::error::{Context, Result, StackError};

/// Seconds a single Docker API call may take.
const TIMEOUT_S: u64 = 120;

/// Where to connect: the flag, else `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
pub fn host(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Connects to `host` and checks that a daemon answers.
pub async fn connect(host: &str) -> Result<Docker> {
    let no_daemon = |detail: String| StackError::NoDaemon {
        host: host.to_owned(),
        detail,
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(no_daemon(format!("{path} does not exist")));
        }
        Docker::connect_with_unix(host, TIMEOUT_S, API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, TIMEOUT_S, API_DEFAULT_VERSION)
    } else {
        return Err(StackError::Input(format!(
            "docker host \"{host}\": use unix:///path/to/docker.sock or tcp://host:port"
        )));
    }
    .map_err(|e| no_daemon(e.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| no_daemon(e.to_string()))
}

/// The host name for HTTP to published ports: the TCP host, or loopback for a local socket.
pub fn published_host(host: &str) -> String {
    host.strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .and_then(|rest| rest.rsplit_once(':').map(|(h, _)| h.to_owned()))
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// Fails with the `docker swarm init` / `join` hint unless this daemon is a swarm manager.
pub async fn ensure_manager(docker: &Docker) -> Result<()> {
    let info = docker.info().await.context(|| "docker info".into())?;
    let swarm = info.swarm.unwrap_or_default();
    let state = swarm
        .local_node_state
        .map(|s| s.to_string())
        .unwrap_or_default();
    if state != "active" {
        return Err(StackError::NotManager(format!(
            "this Docker is not in a swarm (state \"{state}\").\n  On the first Pi: docker swarm init --advertise-addr <its LAN address>\n  On the others:  docker swarm join --token <token> <manager>:2377 (docker swarm join-token worker prints it)"
        )));
    }
    if swarm.control_available != Some(true) {
        return Err(StackError::NotManager(
            "this node is a swarm worker; run `edgesense stack …` on a manager (`docker node ls` there lists them)".into(),
        ));
    }
    Ok(())
}

/// The name of the machine the daemon runs on (the node name of a Pi).
pub async fn daemon_hostname(docker: &Docker) -> Result<String> {
    let info = docker.info().await.context(|| "docker info".into())?;
    Ok(info.name.unwrap_or_else(|| "edgesense".into()))
}

/// Docker's own words for a refused call (the daemon's `message`), without bollard's framing.
pub fn short_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_precedence_and_published_host() {
        assert_eq!(host(Some("tcp://pi:2375")), "tcp://pi:2375");
        assert_eq!(published_host("tcp://10.0.0.2:2375"), "10.0.0.2");
        assert_eq!(published_host("unix:///run/docker.sock"), "127.0.0.1");
    }

    #[tokio::test]
    async fn missing_socket_is_a_clear_error() {
        let e = connect("unix:///nonexistent/docker.sock")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("cannot reach the Docker daemon"), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(connect("ssh://pi").await.is_err());
    }
}
