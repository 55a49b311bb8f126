//! cloud-init files for images that boot with it (their boot partition carries `user-data`,
//! `network-config`, `meta-data`; cloud-init's NoCloud data source reads them): what edgesense
//! writes, merged over the image's own files and with a user's `--user-data`.
//!
//! Merging with the user's cloud-config: keys only one side has are kept; lists that
//! cloud-init runs or installs in order (`runcmd`, `bootcmd`, `packages`, `write_files`,
//! `ssh_authorized_keys`) are concatenated, the user's first; a user defined on both sides with
//! different settings, or any other key with two different values, is a conflict and an
//! error naming the key (secrets are not shown). Nothing is silently overwritten.

use yaml_rust2::{yaml::Hash, Yaml, YamlEmitter, YamlLoader};

use crate::error::{FlashError, Result};

/// Lists whose entries from both sides all apply.
const CONCAT: [&str; 6] = [
    "runcmd",
    "bootcmd",
    "packages",
    "write_files",
    "ssh_authorized_keys",
    "groups",
];
/// Keys whose values are never printed in a conflict.
const SECRET: [&str; 4] = ["passwd", "password", "hashed_passwd", "plain_text_passwd"];

pub fn key(k: &str) -> Yaml {
    Yaml::String(k.to_owned())
}

pub fn s(v: &str) -> Yaml {
    Yaml::String(v.to_owned())
}

pub fn list(items: Vec<Yaml>) -> Yaml {
    Yaml::Array(items)
}

pub fn map(pairs: Vec<(&str, Yaml)>) -> Yaml {
    let mut h = Hash::new();
    for (k, v) in pairs {
        h.insert(key(k), v);
    }
    Yaml::Hash(h)
}

/// Parses a YAML document that must be a mapping (an empty file is an empty mapping).
pub fn parse_map(text: &str, what: &str) -> Result<Hash> {
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| FlashError::Input(format!("{what} is not valid YAML: {e}")))?;
    match docs.into_iter().next() {
        None | Some(Yaml::Null) => Ok(Hash::new()),
        Some(Yaml::Hash(h)) => Ok(h),
        Some(_) => Err(FlashError::Input(format!(
            "{what} must be a YAML mapping (key: value lines)"
        ))),
    }
}

fn show(k: &str, v: &Yaml) -> String {
    if SECRET.contains(&k) {
        return "(secret)".into();
    }
    let mut out = String::new();
    let _ = YamlEmitter::new(&mut out).dump(v);
    out.trim_start_matches("---").trim().replace('\n', " ")
}

fn user_name(u: &Yaml) -> Option<&str> {
    match u {
        Yaml::String(s) => Some(s),
        Yaml::Hash(h) => h.get(&key("name")).and_then(Yaml::as_str),
        _ => None,
    }
}

/// `user` (the `--user-data` mapping) merged with `ours`; conflicts are errors.
pub fn merge_user(user: Hash, ours: Hash) -> Result<Hash> {
    let mut out = user;
    for (k, v) in ours {
        let name = k.as_str().unwrap_or("?").to_owned();
        let Some(theirs) = out.get(&k).cloned() else {
            out.insert(k, v);
            continue;
        };
        if theirs == v {
            continue;
        }
        match (name.as_str(), theirs, v) {
            (n, Yaml::Array(mut a), Yaml::Array(b)) if CONCAT.contains(&n) => {
                a.extend(b);
                out.insert(k, Yaml::Array(a));
            }
            ("users", Yaml::Array(mut a), Yaml::Array(b)) => {
                for u in b {
                    match a.iter().find(|x| user_name(x) == user_name(&u) && user_name(&u).is_some()) {
                        Some(same) if *same == u => {}
                        Some(_) => {
                            return Err(FlashError::Input(format!(
                                "--user-data defines user \"{}\" differently from the edgesense flags (--user, --password-file, --ssh-key); define it in one place",
                                user_name(&u).unwrap_or("?")
                            )))
                        }
                        None => a.push(u),
                    }
                }
                out.insert(k, Yaml::Array(a));
            }
            (n, theirs, v) => {
                return Err(FlashError::Input(format!(
                "--user-data sets {n}: {} but the edgesense flags set {n}: {}; remove one of them",
                show(n, &theirs),
                show(n, &v)
            )))
            }
        }
    }
    Ok(out)
}

/// `base` (the image's own file) with every key of `ours` set over it.
pub fn overlay(base: Hash, ours: Hash) -> Hash {
    let mut out = base;
    for (k, v) in ours {
        out.insert(k, v);
    }
    out
}

/// YAML text for `h`, with `header` (e.g. `#cloud-config`) as the first line.
pub fn emit(h: Hash, header: Option<&str>) -> Result<String> {
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&Yaml::Hash(h))
        .map_err(|e| FlashError::Input(format!("cannot write YAML: {e}")))?;
    let body = out.trim_start_matches("---").trim_start_matches('\n');
    Ok(match header {
        Some(h) => format!("{h}\n{body}\n"),
        None => format!("{body}\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Hash {
        parse_map(text, "test").unwrap()
    }

    #[test]
    fn lists_concatenate_and_scalars_must_agree() {
        let user = h("#cloud-config\npackages: [vim]\nruncmd:\n  - echo mine\nlocale: de_DE.UTF-8\nhostname: pi-1\n");
        let ours = h("packages: [docker.io]\nruncmd:\n  - [bash, /boot/firmware/edgesense/firstboot.sh]\nhostname: pi-1\ntimezone: Europe/Berlin\n");
        let m = merge_user(user, ours).unwrap();
        let text = emit(m, Some("#cloud-config")).unwrap();
        let back = h(&text);
        assert_eq!(back[&key("packages")], list(vec![s("vim"), s("docker.io")]));
        assert_eq!(back[&key("runcmd")].as_vec().unwrap().len(), 2);
        assert_eq!(
            back[&key("locale")],
            s("de_DE.UTF-8"),
            "user-only keys stay"
        );
        assert_eq!(back[&key("timezone")], s("Europe/Berlin"));
        assert!(text.starts_with("#cloud-config\n"), "{text}");
    }

    #[test]
    fn conflicts_are_named_and_secrets_hidden() {
        let e = merge_user(h("hostname: a\n"), h("hostname: b\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hostname: a") && e.contains("hostname: b"),
            "{e}"
        );
        let e = merge_user(
            h("users:\n  - name: pi\n    passwd: $6$secret\n"),
            h("users:\n  - name: pi\n    lock_passwd: true\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("user \"pi\""), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let both = merge_user(
            h("users:\n  - default\n  - name: ops\n"),
            h("users:\n  - name: pi\n"),
        )
        .unwrap();
        assert_eq!(both[&key("users")].as_vec().unwrap().len(), 3);
        assert!(parse_map("- a\n- b\n", "x").is_err());
        assert!(parse_map("a: [\n", "x").is_err());
    }

    #[test]
    fn overlay_replaces_the_images_defaults() {
        let m = overlay(
            h("hostname: raspberrypi\nmanage_etc_hosts: true\n"),
            h("hostname: pi-kitchen\n"),
        );
        assert_eq!(m[&key("hostname")], s("pi-kitchen"));
        assert_eq!(m[&key("manage_etc_hosts")], Yaml::Boolean(true));
    }
}
