//! The CLI's calls to Prometheus and Alertmanager (their published ports): readiness, targets,
//! alerts, silences. Over https verified against the fleet CA, logged in as the operator
//! (`edgesense`), through the client the agent uses too ([`edgesense_net`]).

use std::time::Duration;

use edgesense_net::{tls, Auth, Call, Client, Target};

/// How the CLI reaches the stack's web endpoints: which CA it trusts and who it logs in as.
#[derive(Clone, Debug, Default)]
pub struct Access {
    client: Client,
}

impl Access {
    /// Trusting `ca_pem` (the fleet CA) for https, logging in as `login` (user, password).
    pub fn new(ca_pem: Option<&str>, login: Option<(&str, &str)>) -> Result<Access, String> {
        let tls = ca_pem
            .map(|pem| {
                let roots = tls::roots_from_certs(tls::certs_from_pem(pem.as_bytes())?)?;
                tls::client_config(roots, None).map_err(|e| e.to_string())
            })
            .transpose()
            .map_err(|e| format!("the fleet CA: {e}"))?;
        Ok(Access {
            client: Client::new()
                .with_tls(tls)
                .with_auth(login.map(|(u, p)| Auth::Basic {
                    user: u.to_owned(),
                    password: p.to_owned(),
                })),
        })
    }

    /// GETs `url` within `timeout`: (status, body).
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<(u16, String), String> {
        self.send(url, None, timeout).await
    }

    /// POSTs the JSON `body` to `url` within `timeout`: (status, body).
    pub async fn post_json(
        &self,
        url: &str,
        body: String,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        self.send(url, Some(body), timeout).await
    }

    async fn send(
        &self,
        url: &str,
        json: Option<String>,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        // The whole URL is the target: its path is the call's.
        let target = Target::parse(url).map_err(|e| e.to_string())?;
        let call = match json {
            None => Call::get(""),
            Some(b) => Call::post_json("", b),
        };
        let answer = self
            .client
            .clone()
            .with_timeout(timeout)
            .send(&target, call.limit(16 << 20))
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            answer.status,
            String::from_utf8_lossy(&answer.body).into_owned(),
        ))
    }
}

/// `%XX`-escapes `s` for a query string.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn urlencode_escapes_promql() {
        assert_eq!(
            super::urlencode("up{job=\"edgesense\"}"),
            "up%7Bjob%3D%22edgesense%22%7D"
        );
    }
}
