//! The fleet's own certificate authority: one CA per stack, certificates for the names
//! services and agents are reached by on the overlay.
//!
//! - Keys are ECDSA P-256 (every TLS stack in the fleet verifies them fast; a Pi Zero signs a
//!   handshake in milliseconds where RSA-2048 takes tens).
//! - The CA is valid for 10 years and never leaves the stack's state directory on the manager
//!   that made it ([`crate::credentials`]); leaves are valid for a year and `stack up` renews
//!   any that expires within `--renew-within` days (30 by default).
//! - Every leaf carries both serverAuth and clientAuth: Prometheus presents its own certificate
//!   when it scrapes the agents, an agent its own to its peers.
//! - The CA's subject is rebuilt from its common name to sign new leaves (rcgen needs the
//!   issuer's name and key, not its certificate), so the name is kept beside the key.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Result, StackError};

const CA_DAYS: i64 = 3650;
/// How long a leaf is valid.
pub const LEAF_DAYS: i64 = 365;

fn pki_error(what: &str, e: impl std::fmt::Display) -> StackError {
    StackError::Input(format!("{what}: {e}"))
}

/// A CA: its certificate, key and common name (PEM).
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    pub name: String,
    /// Seconds since the Unix epoch.
    pub not_after: u64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ca({})", self.name)
    }
}

/// A leaf certificate with its key, in one PEM text (certificate first).
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    pub pem: String,
    pub not_after: u64,
    pub names: Vec<String>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leaf({:?}, not after {})", self.names, self.not_after)
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn unix(t: time::OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "edgesense");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// Every certificate's `notBefore`: the Unix epoch. A Pi has no real-time clock: it boots at
/// 1970 or, with fake-hwclock, at the time saved at the last shutdown (a fresh card: the image's
/// build date), and stays there until NTP answers, which on a LAN without the internet may be
/// never. A `notBefore` at issuance would make such a node refuse every certificate it is shown
/// (Prometheus's client certificate on each scrape, Alertmanager's server certificate on each
/// reconcile): the node would be cut off until its clock is set. `notAfter` still ends a
/// leaf's life on every node whose clock is right.
const NOT_BEFORE: time::OffsetDateTime = time::OffsetDateTime::UNIX_EPOCH;

impl Ca {
    /// A new CA named after `stack` and a random suffix (two fleets' CAs are told apart in a
    /// browser's certificate list).
    pub fn generate(stack: &str) -> Result<Ca> {
        let key = KeyPair::generate().map_err(|e| pki_error("generate the CA key", e))?;
        let suffix = &crate::credentials::random_hex(4)?;
        let name = format!("edgesense fleet CA {stack} {suffix}");
        let mut p = ca_params(&name);
        p.not_before = NOT_BEFORE;
        p.not_after = now() + time::Duration::days(CA_DAYS);
        let cert = p
            .self_signed(&key)
            .map_err(|e| pki_error("sign the CA", e))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            name,
            not_after: unix(p.not_after),
        })
    }

    /// A leaf for `names` (DNS names or IP addresses), valid for `days`, named `cn`.
    pub fn issue(&self, cn: &str, names: &[String], days: i64) -> Result<Leaf> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| pki_error("the CA key", e))?;
        let issuer = Issuer::new(ca_params(&self.name), ca_key);
        let key = KeyPair::generate().map_err(|e| pki_error("generate a key", e))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "edgesense");
        p.distinguished_name = dn;
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| pki_error(&format!("certificate name {n:?}"), e)),
            })
            .collect::<Result<_>>()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = NOT_BEFORE;
        p.not_after = now() + time::Duration::days(days);
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| pki_error(&format!("sign the certificate for {cn}"), e))?;
        Ok(Leaf {
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            not_after: unix(p.not_after),
            names: names.to_vec(),
        })
    }
}

/// Whether something valid until `not_after` must be renewed now, `within` before its end.
pub fn due(not_after: u64, within: Duration) -> bool {
    unix_now() + within.as_secs() >= not_after
}

/// `t` (seconds since the Unix epoch) as an RFC 3339 date and time in UTC.
pub fn rfc3339(t: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(t).unwrap_or(0))
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesense_net::rustls::{
        client::danger::ServerCertVerifier,
        pki_types::{ServerName, UnixTime},
    };

    fn verifier(ca: &Ca) -> std::sync::Arc<dyn ServerCertVerifier> {
        let roots = edgesense_net::tls::roots_from_certs(
            edgesense_net::tls::certs_from_pem(ca.cert_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        edgesense_net::rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            edgesense_net::tls::provider(),
        )
        .build()
        .unwrap()
    }

    fn verify(ca: &Ca, leaf: &Leaf, name: &str) -> std::result::Result<(), String> {
        let chain = edgesense_net::tls::certs_from_pem(leaf.pem.as_bytes()).unwrap();
        verifier(ca)
            .verify_server_cert(
                &chain[0],
                &[],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_leaf_verifies_for_its_names_against_its_own_ca_only() {
        let ca = Ca::generate("edgesense").unwrap();
        assert!(ca.name.starts_with("edgesense fleet CA edgesense "));
        let names = vec![
            "edgesense-agent".to_owned(),
            "tasks.edgesense-agent".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let leaf = ca.issue("agent", &names, 30).unwrap();
        for n in &names {
            verify(&ca, &leaf, n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        let e = verify(&ca, &leaf, "alertmanager").unwrap_err();
        assert!(e.contains("not valid for name"), "{e}");
        let other = Ca::generate("edgesense").unwrap();
        let e = verify(&other, &leaf, "edgesense-agent").unwrap_err();
        assert!(e.to_lowercase().contains("issuer"), "{e}");
        assert!(leaf.pem.contains("BEGIN CERTIFICATE") && leaf.pem.contains("PRIVATE KEY"));
        let id = edgesense_net::tls::load_identity_pem(leaf.pem.as_bytes()).unwrap();
        assert_eq!(id.chain.len(), 1, "the key block is not a certificate");
        let days = (leaf.not_after - unix_now()) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        assert!(!due(leaf.not_after, Duration::from_secs(86_400)));
        assert!(due(leaf.not_after, Duration::from_secs(31 * 86_400)));
        assert!(rfc3339(0).starts_with("1970-01-01T00:00:00"));
    }
}
