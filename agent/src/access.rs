//! Who can reach the agent and what it trusts, from the config and the flags: the listen
//! address (failing closed), the token, TLS files, the Alertmanager user, connection caps.
//!
//! Failing closed: an agent without a token would let anyone who reaches its port set the LEDs
//! and post alerts. So without `token_file` it serves loopback only: the default address
//! becomes `127.0.0.1:9842`, an explicit non-loopback one is a config error, unless
//! `--allow-anonymous-writes` says the open API is wanted.

use std::{net::SocketAddr, path::PathBuf};

use edgesense_net::Target;

use crate::{
    config::{ConfigError, Loaded},
    credentials::CredentialFiles,
    listener,
};

/// The Alertmanager user agents log in as unless `[alertmanager] username` says otherwise.
pub const DEFAULT_ALERTMANAGER_USER: &str = "agent";

/// The flags of this part (they override the file).
#[derive(Clone, Debug, Default)]
pub struct AccessFlags {
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub alertmanager_user: Option<String>,
    pub alertmanager_password_file: Option<PathBuf>,
    pub allow_anonymous_writes: bool,
}

/// The resolved part.
#[derive(Clone, Debug, PartialEq)]
pub struct Access {
    pub listen: SocketAddr,
    /// No token and the default address: moved to loopback (say so at start).
    pub loopback_only: bool,
    pub allow_anonymous_writes: bool,
    pub credentials: CredentialFiles,
    pub max_connections_per_client: usize,
}

/// Where the listen address came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenFrom {
    Default,
    Flag,
    /// The file, at this place.
    File(std::ops::Range<usize>),
}

/// `listen` as resolved (`from` says where it came from); `am_urls` the Alertmanager URLs with
/// their place in the file (`None`: from `--alertmanager`).
pub fn resolve(
    loaded: &Loaded,
    flags: &AccessFlags,
    listen: SocketAddr,
    from: ListenFrom,
    am_urls: &[(String, Option<std::ops::Range<usize>>)],
    remote_write: Option<&(String, Option<std::ops::Range<usize>>)>,
) -> Result<Access, ConfigError> {
    let c = &loaded.config;
    let tls = c.tls.as_ref();
    let cert = flags
        .tls_cert
        .clone()
        .or_else(|| tls.and_then(|t| t.cert_file.as_ref().map(|p| p.get_ref().clone())));
    let key = flags
        .tls_key
        .clone()
        .or_else(|| tls.and_then(|t| t.key_file.as_ref().map(|p| p.get_ref().clone())));
    let ca = flags
        .tls_ca
        .clone()
        .or_else(|| tls.and_then(|t| t.ca_file.clone()));
    if cert.is_none() && key.is_some() {
        let at = tls.and_then(|t| t.key_file.as_ref()).map(|k| k.span());
        return Err(error(
            loaded,
            at,
            "key_file without cert_file: give the certificate too ([tls] cert_file or --tls-cert)",
        ));
    }
    let am = c.alertmanager.as_ref();
    let password_file = flags.alertmanager_password_file.clone().or_else(|| {
        am.and_then(|a| a.password_file.as_ref())
            .map(|p| p.get_ref().clone())
    });
    let urls = am_urls
        .iter()
        .map(|(u, s)| (u, s, "https://alertmanager:9093"))
        .chain(remote_write.map(|(u, s)| (u, s, "https://prometheus:9090/api/v1/write")));
    for (url, span, example) in urls {
        let target = Target::parse(url).map_err(|_| {
            error(
                loaded,
                span.clone(),
                format!(
                    "url \"{url}\" is not http://host:port or https://host:port (e.g. {example})"
                ),
            )
        })?;
        if target.tls && ca.is_none() {
            return Err(error(
                loaded,
                span.clone(),
                format!(
                    "{url} is https: give the CA to verify it against ([tls] ca_file or --tls-ca)"
                ),
            ));
        }
    }
    let alertmanager_user = flags
        .alertmanager_user
        .clone()
        .or_else(|| am.and_then(|a| a.username.clone()))
        .unwrap_or_else(|| DEFAULT_ALERTMANAGER_USER.into());
    let rw = c.remote_write.as_ref();
    let prometheus_user = rw
        .and_then(|r| r.username.clone())
        .unwrap_or_else(|| alertmanager_user.clone());
    let prometheus_password_file = rw
        .and_then(|r| r.password_file.clone())
        .or_else(|| password_file.clone());
    let token_file = flags.token_file.clone().or_else(|| c.token_file.clone());
    let open = token_file.is_none() && !flags.allow_anonymous_writes;
    let mut listen = listen;
    let mut loopback_only = false;
    if open && !listen.ip().is_loopback() {
        if from != ListenFrom::Default {
            let at = match &from {
                ListenFrom::File(span) => Some(span.clone()),
                _ => None,
            };
            return Err(error(
                loaded,
                at,
                format!("listen {listen} without a token would let anyone who reaches it set the LEDs and post alerts: set token_file (or --token-file), listen on 127.0.0.1, or pass --allow-anonymous-writes to accept that"),
            ));
        }
        listen = SocketAddr::new([127, 0, 0, 1].into(), listen.port());
        loopback_only = true;
    }
    let per_client = match &c.max_connections_per_client {
        None => listener::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        Some(m) if (1..=65_536).contains(m.get_ref()) => *m.get_ref(),
        Some(m) => {
            return Err(loaded.error_at(
                m.span(),
                "max_connections_per_client must be between 1 and 65536",
            ))
        }
    };
    Ok(Access {
        listen,
        loopback_only,
        allow_anonymous_writes: flags.allow_anonymous_writes,
        credentials: CredentialFiles {
            token_file,
            cert,
            key,
            ca,
            alertmanager_user,
            alertmanager_password_file: password_file,
            prometheus_user,
            prometheus_password_file,
        },
        max_connections_per_client: per_client,
    })
}

fn error(
    loaded: &Loaded,
    span: Option<std::ops::Range<usize>>,
    message: impl Into<String>,
) -> ConfigError {
    match span {
        Some(s) => loaded.error_at(s, message),
        None => ConfigError {
            path: loaded.path.clone(),
            location: None,
            message: message.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn loaded(text: &str) -> Loaded {
        crate::config::parse(Path::new("node.toml"), text.into()).unwrap()
    }

    fn any() -> SocketAddr {
        "0.0.0.0:9842".parse().unwrap()
    }

    #[test]
    fn without_a_token_the_default_address_becomes_loopback() {
        let a = resolve(
            &loaded(""),
            &AccessFlags::default(),
            any(),
            ListenFrom::Default,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(a.listen, "127.0.0.1:9842".parse().unwrap());
        assert!(a.loopback_only);
        let flags = AccessFlags {
            token_file: Some("/t".into()),
            ..AccessFlags::default()
        };
        let a = resolve(&loaded(""), &flags, any(), ListenFrom::Default, &[], None).unwrap();
        assert_eq!((a.listen, a.loopback_only), (any(), false));
        let open = AccessFlags {
            allow_anonymous_writes: true,
            ..AccessFlags::default()
        };
        assert_eq!(
            resolve(&loaded(""), &open, any(), ListenFrom::Default, &[], None)
                .unwrap()
                .listen,
            any()
        );
    }

    #[test]
    fn an_explicit_open_address_without_a_token_is_refused_at_its_line() {
        let l = loaded("node = \"n\"\nlisten = \"0.0.0.0:9842\"\n");
        let span = l.config.listen.as_ref().unwrap().span();
        let e = resolve(
            &l,
            &AccessFlags::default(),
            any(),
            ListenFrom::File(span),
            &[],
            None,
        )
        .unwrap_err();
        assert_eq!(e.location, Some((2, 10)), "{e}");
        assert!(e.message.contains("--allow-anonymous-writes"), "{e}");
        let local = "127.0.0.1:9842".parse().unwrap();
        assert!(resolve(
            &l,
            &AccessFlags::default(),
            local,
            ListenFrom::Flag,
            &[],
            None
        )
        .is_ok());
        let e = resolve(
            &l,
            &AccessFlags::default(),
            any(),
            ListenFrom::Flag,
            &[],
            None,
        )
        .unwrap_err();
        assert_eq!(e.location, None, "a flag has no place in the file: {e}");
    }

    #[test]
    fn https_alertmanager_needs_the_ca_and_tls_files_are_picked_up() {
        let l =
            loaded("token_file = \"/t\"\n[alertmanager]\nurl = \"https://alertmanager:9093\"\n");
        let urls = [("https://alertmanager:9093".to_owned(), Some(40..67))];
        let e = resolve(
            &l,
            &AccessFlags::default(),
            any(),
            ListenFrom::Default,
            &urls,
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("ca_file"), "{e}");
        let l = loaded(
            "token_file = \"/t\"\n[tls]\ncert_file = \"/a.pem\"\nca_file = \"/ca.crt\"\n[alertmanager]\npassword_file = \"/pw\"\n",
        );
        let a = resolve(
            &l,
            &AccessFlags::default(),
            any(),
            ListenFrom::Default,
            &urls,
            None,
        )
        .unwrap();
        let c = &a.credentials;
        assert_eq!(c.cert.as_deref(), Some(Path::new("/a.pem")));
        assert_eq!(
            c.key, None,
            "the key is looked for in the certificate's file"
        );
        assert_eq!(c.ca.as_deref(), Some(Path::new("/ca.crt")));
        assert_eq!(c.alertmanager_user, "agent");
        assert_eq!(
            c.alertmanager_password_file.as_deref(),
            Some(Path::new("/pw"))
        );
        assert_eq!(
            (
                c.prometheus_user.as_str(),
                c.prometheus_password_file.as_deref()
            ),
            ("agent", Some(Path::new("/pw"))),
            "remote write logs in as the Alertmanager user unless told otherwise"
        );
        let rw = ("https://prometheus:9090/api/v1/write".to_owned(), None);
        assert!(resolve(
            &loaded("token_file = \"/t\"\n"),
            &AccessFlags::default(),
            any(),
            ListenFrom::Default,
            &[],
            Some(&rw)
        )
        .unwrap_err()
        .message
        .contains("ca_file"));
        let bad = [("ftp://x".to_owned(), None)];
        assert!(resolve(
            &l,
            &AccessFlags::default(),
            any(),
            ListenFrom::Default,
            &bad,
            None
        )
        .is_err());
    }
}
