//! What became of the execution behind a connection, so that a shell, a
//! command or a tunnel that ends (or cannot start) says why: "execution #5
//! was stopped" rather than a bare 137 or "connection refused".

use crate::source::{ApiClient, Execution, Status};

/// How often, and how many times, a stopping execution is asked again.
const STOPPING_POLL: std::time::Duration = std::time::Duration::from_millis(200);
const STOPPING_POLLS: usize = 25;

/// An execution found through a source, asked again when its connection
/// ends.
pub struct Watch {
    client: ApiClient,
    id: String,
    counter: u64,
}

impl Watch {
    /// Watches `execution` through `client`.
    pub fn new(client: ApiClient, execution: &Execution) -> Self {
        Watch {
            client,
            id: execution.id.clone(),
            counter: execution.counter,
        }
    }

    /// `execution #5 was stopped` once it has ended; `None` while it runs,
    /// or when the source cannot be asked.
    pub async fn ended(&self) -> Option<String> {
        // A stop in progress kills the processes before the status says
        // `stopped`: wait for it a little (bounded), and no longer.
        for _ in 0..STOPPING_POLLS {
            let status = self.client.execution(&self.id).await.ok()?.status();
            if status.is_finished() {
                return Some(format!(
                    "execution #{} {}",
                    self.counter,
                    ended_phrase(&status)
                ));
            }
            if status != Status::Stopping {
                return None;
            }
            tokio::time::sleep(STOPPING_POLL).await;
        }
        Some(format!("execution #{} is being stopped", self.counter))
    }
}

/// How an ended execution is said.
fn ended_phrase(status: &Status) -> String {
    match status {
        Status::Complete => "is complete".into(),
        Status::Stopped => "was stopped".into(),
        Status::Error => "failed".into(),
        Status::Crashed => "crashed".into(),
        other => format!("has ended ({})", other.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_reads_as_a_sentence() {
        assert_eq!(ended_phrase(&Status::Stopped), "was stopped");
        assert_eq!(ended_phrase(&Status::Complete), "is complete");
        assert_eq!(ended_phrase(&Status::Error), "failed");
        assert_eq!(
            ended_phrase(&Status::Other("stopping_hard".into())),
            "has ended (stopping_hard)"
        );
    }
}
