//! Turning secrets into what the Pi stores, so the clear text never lands on the card: the login
//! password as a SHA-512-crypt hash (`$6$…`, what `/etc/shadow` and `userconf.txt` hold), the
//! Wi-Fi passphrase as its WPA PSK (IEEE 802.11i: PBKDF2-HMAC-SHA1(passphrase, SSID, 4096, 256
//! bits), what `wpa_passphrase` prints and netplan/NetworkManager accept as 64 hex digits).

use std::io::Read;

use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::error::{FlashError, Result};

fn random(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| FlashError::Input(format!("cannot read /dev/urandom: {e}")))?;
    Ok(b)
}

/// SHA-512-crypt of `password` with a random salt.
pub fn password_hash(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(FlashError::Input("the password is empty".into()));
    }
    let salt = random(12)?;
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| FlashError::Input(format!("cannot hash the password: {e}")))
}

/// The WPA2 pre-shared key for `passphrase` on network `ssid`, as 64 hex digits.
pub fn wpa_psk(ssid: &str, passphrase: &str) -> Result<String> {
    if !(8..=63).contains(&passphrase.len()) {
        return Err(FlashError::Input(
            "a WPA passphrase has 8 to 63 characters".into(),
        ));
    }
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(FlashError::Input("an SSID has 1 to 32 bytes".into()));
    }
    let mut psk = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase.as_bytes(), ssid.as_bytes(), 4096, &mut psk);
    Ok(psk.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wpa_psk_matches_the_ieee_test_vector() {
        // IEEE 802.11i-2004, annex H.4.1: "password" / "IEEE".
        assert_eq!(
            wpa_psk("IEEE", "password").unwrap(),
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        assert!(wpa_psk("x", "short").is_err());
    }

    #[test]
    fn password_hashes_are_salted_sha512_crypt() {
        let a = password_hash("raspberry").unwrap();
        let b = password_hash("raspberry").unwrap();
        assert!(a.starts_with("$6$"), "{a}");
        assert_ne!(a, b, "random salt");
        assert!(password_hash("").is_err());
    }
}
