//! Whether user-data holds secret material, which belongs in a Secret (opted in for nodeboot)
//! rather than in a BootConfig that anyone allowed to read BootConfigs can read.

/// Keys whose values are secrets in cloud-config (passwords, tokens, keys).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "hashed_passwd",
    "plain_text_passwd",
    "chpasswd",
    "token",
    "secret",
    "private_key",
    "ssh_keys",
    "api_key",
    "apikey",
    "client_secret",
];

/// What secret material the text holds, named for the report (never the value), or `None`.
pub(crate) fn secret_material(text: &str) -> Option<String> {
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY") {
        return Some("a private key".to_owned());
    }
    for line in text.lines() {
        let key = line
            .trim_start()
            .trim_start_matches("- ")
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_ascii_lowercase();
        if let Some(hit) = SECRET_KEYS
            .iter()
            .find(|k| key == **k || key.ends_with(&format!("_{k}")))
        {
            return Some(format!("a '{hit}' key"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_passwords_tokens_and_keys_but_not_public_keys() {
        assert!(secret_material("#cloud-config\nusers:\n- name: a\n  passwd: x\n").is_some());
        assert!(secret_material("#cloud-config\nchpasswd:\n  list: |\n    root:x\n").is_some());
        assert!(
            secret_material(
                "write_files:\n- content: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n"
            )
            .is_some()
        );
        assert!(secret_material("#cloud-config\nmunge_token: abc\n").is_some());
        assert!(
            secret_material(
                "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAA]\nruncmd: [ls]\n"
            )
            .is_none()
        );
    }
}
