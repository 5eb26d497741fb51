//! The agent's announcement: the contract between `porthole-agent` and
//! everything that reads an execution's log (porthole's scanner, a person).

use serde::{Deserialize, Serialize};

/// Prefix of Valohai's machine-readable SSH status line.
pub const STATUS_PREFIX: &str = "::ssh::";

/// Where an execution's SSH server listens, and which host key it presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Host name or IP address a client should connect to.
    pub address: String,
    /// TCP port of the SSH server.
    pub port: u16,
    /// The host key's fingerprint as OpenSSH prints it (`SHA256:<base64>`).
    /// Optional because Valohai's own status line carries none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

impl Announcement {
    /// The three lines the agent prints when it is listening: the
    /// machine-readable status form, then the human form from Valohai's docs.
    pub fn lines(&self) -> [String; 3] {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        [
            format!("{STATUS_PREFIX}{json}"),
            "You can now add the path to your private key and connect:".to_string(),
            format!(
                "$ ssh -i <path-to-private-key> {} -p {} -t /bin/bash",
                self.address, self.port
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_the_documented_format() {
        let a = Announcement {
            address: "10.0.0.5".into(),
            port: 2222,
            host_key: Some("SHA256:abc".into()),
        };
        let [status, hint, cmd] = a.lines();
        assert_eq!(
            status,
            r#"::ssh::{"address":"10.0.0.5","port":2222,"host_key":"SHA256:abc"}"#
        );
        assert_eq!(
            hint,
            "You can now add the path to your private key and connect:"
        );
        assert_eq!(
            cmd,
            "$ ssh -i <path-to-private-key> 10.0.0.5 -p 2222 -t /bin/bash"
        );
    }

    #[test]
    fn host_key_is_optional_when_reading() {
        let a: Announcement = serde_json::from_str(r#"{"port": 2222, "address": "127.0.0.1"}"#)
            .expect("valohai's form parses");
        assert_eq!(a.host_key, None);
        assert_eq!(a.port, 2222);
    }
}
