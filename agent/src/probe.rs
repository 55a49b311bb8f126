//! `edgesense-agent --probe URL`: one GET, exit 0 on a 2xx answer. The images are `FROM
//! scratch` (no shell, no wget, no curl), so their health checks run this binary: the agent's
//! own against its loopback (plain HTTP is served there), Prometheus's and Alertmanager's over
//! https with the fleet CA (`--tls-ca`) and a health-check user (`--probe-user`,
//! `--probe-password-file`), since their `--web.config.file` guards every path, `/-/ready`
//! included.

use std::{path::Path, time::Duration};

use edgesense_net::{tls, Auth, Call, Client, Target};

/// Basic auth as `user` with the password on the first line of `password_file`.
fn read_auth(user: &str, password_file: &Path) -> Result<Auth, String> {
    let text = std::fs::read_to_string(password_file)
        .map_err(|e| format!("{}: cannot read: {e}", password_file.display()))?;
    let password = text.lines().next().unwrap_or("").trim();
    if password.is_empty() {
        return Err(format!("{}: no password in it", password_file.display()));
    }
    Ok(Auth::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// GETs `url` (`http://…` or, with `ca`, `https://…`), with `auth` (user, password file) as
/// basic auth; Ok on a 2xx status, else why not.
pub fn probe(
    url: &str,
    ca: Option<&Path>,
    auth: Option<(&str, &Path)>,
    timeout: Duration,
) -> Result<u16, String> {
    let target = Target::parse(url).map_err(|e| e.to_string())?;
    let tls = ca
        .map(|p| tls::load_roots(p).and_then(|r| tls::client_config(r, None)))
        .transpose()
        .map_err(|e| e.to_string())?;
    let auth = auth.map(|(u, f)| read_auth(u, f)).transpose()?;
    let client = Client::new()
        .with_tls(tls)
        .with_auth(auth)
        .with_timeout(timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let answer = rt
        .block_on(client.send(&target, Call::get("").limit(64 << 10)))
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&answer.status) {
        Ok(answer.status)
    } else {
        Err(format!("{url}: HTTP {}", answer.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::{Read, Write},
        net::TcpListener,
    };

    fn serve_once(answer: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(answer.as_bytes());
        });
        format!("http://{addr}/-/ready")
    }

    #[test]
    fn two_hundred_is_healthy_anything_else_is_not() {
        let t = Duration::from_secs(2);
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(probe(&serve_once(ok), None, None, t), Ok(200));
        let e = probe(
            &serve_once("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
            None,
            None,
            t,
        )
        .unwrap_err();
        assert!(e.contains("503"), "{e}");
        let e = probe("https://127.0.0.1:1/", None, None, t).unwrap_err();
        assert!(
            e.contains("CA"),
            "https without a CA says what is missing: {e}"
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(probe(&format!("http://{closed}/"), None, None, t).is_err());
    }

    #[test]
    fn the_password_is_the_files_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("health");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(
            format!("{:?}", read_auth("self", &p).unwrap()),
            "Basic(self:…)"
        );
        std::fs::write(&p, "\n").unwrap();
        assert!(read_auth("self", &p).unwrap_err().contains("no password"));
    }
}
