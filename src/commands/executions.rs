//! `run`, `list`, `logs` and `stop`: executions through the source.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use super::source::{self, Source};
use crate::cli::SourceArgs;
use crate::config::Paths;
use crate::control;
use crate::source::follow::{LogFollower, Next};
use crate::source::model::CreateExecution;
use crate::source::valohai::ExecutionFilter;
use crate::source::{LogEvent, Stream};

/// How often a followed log is polled.
const POLL: Duration = Duration::from_secs(1);
/// Longest wait between retries after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `porthole run`: starts a local execution under the agent.
pub async fn run(
    paths: &Paths,
    title: Option<String>,
    linger: Option<String>,
    command: Vec<String>,
) -> anyhow::Result<i32> {
    if let Some(l) = &linger {
        humantime::parse_duration(l)
            .with_context(|| format!("--linger {l}: not a duration (try 10m)"))?;
    }
    let key = paths.default_key();
    let public = if key.exists() {
        let pub_path = key.with_extension("pub");
        std::fs::read_to_string(&pub_path)
            .with_context(|| {
                format!(
                    "cannot read {}; recreate the key with `porthole keygen --force`",
                    pub_path.display()
                )
            })?
            .trim()
            .to_string()
    } else {
        let public = super::keygen::create(&key, false)?;
        eprintln!("porthole: created your debug key {}", key.display());
        public
    };
    let endpoint = control::ensure_running(paths).await?;
    let client = source::local_client(&endpoint)?;
    let cwd = std::env::current_dir()
        .ok()
        .map(|d| d.display().to_string());
    // Untitled, it is known by its command, as `docker ps` shows it.
    let title = title.or_else(|| Some(command_title(&command)));
    let execution = client
        .create(&CreateExecution {
            project: Some(source::LOCAL_PROJECT.into()),
            command,
            title,
            linger,
            debug_key: Some(public),
            cwd,
        })
        .await?;
    println!(
        "execution #{} started ({})",
        execution.counter, execution.id
    );
    eprintln!("  log:    porthole logs {} --follow", execution.counter);
    eprintln!("  shell:  porthole shell {}", execution.counter);
    Ok(0)
}

/// A title made of the command line, cut to a list's width.
fn command_title(command: &[String]) -> String {
    const MAX: usize = 60;
    let line = command.join(" ");
    if line.chars().count() <= MAX {
        line
    } else {
        let cut: String = line.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

/// `porthole list`.
pub async fn list(
    paths: &Paths,
    args: &SourceArgs,
    json: bool,
    statuses: Vec<String>,
) -> anyhow::Result<i32> {
    let source = source::open(args, paths).await?;
    let executions = source
        .client
        .executions(&ExecutionFilter {
            statuses,
            ..Default::default()
        })
        .await?;
    let mut rows = Vec::new();
    for e in &executions {
        // Only running executions can be reached: don't ask for the others.
        let endpoint = if e.status().is_finished() && !source.local {
            None
        } else {
            source.endpoint(e).await.ok().flatten()
        };
        rows.push((e, endpoint));
    }
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, ep)| {
                serde_json::json!({
                    "counter": e.counter,
                    "id": e.id,
                    "status": e.status,
                    "title": e.label(),
                    "ctime": e.ctime,
                    "ssh": ep.as_ref().map(|ep| serde_json::json!({
                        "host": ep.host, "port": ep.port, "host_key": ep.host_key,
                    })),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>5}  {:<9} {:>6}  {:<22} TITLE",
        "#", "STATUS", "AGE", "SSH"
    )?;
    for (e, ep) in rows {
        let ssh = ep.map_or_else(|| "-".to_string(), |ep| format!("{}:{}", ep.host, ep.port));
        writeln!(
            out,
            "{:>5}  {:<9} {:>6}  {:<22} {}",
            e.counter,
            e.status,
            crate::source::model::age(e.ctime.as_deref()),
            ssh,
            e.label()
        )?;
    }
    Ok(0)
}

fn print_event(e: &LogEvent) {
    match e.stream {
        Stream::Stderr => eprintln!("{}", e.message),
        Stream::Status => eprintln!("{}", e.message),
        Stream::Stdout | Stream::Other => println!("{}", e.message),
    }
}

/// `porthole logs`.
pub async fn logs(
    paths: &Paths,
    args: &SourceArgs,
    exec: &str,
    follow: bool,
) -> anyhow::Result<i32> {
    let source = source::open(args, paths).await?;
    let execution = source.execution(exec).await?;
    let id = execution.id.clone();
    let mut follower = LogFollower::new();
    let mut limit = follower.first_limit();
    let mut backoff = POLL;
    let mut finished_polls = 0;
    loop {
        match fetch_once(&source, &id, &mut follower, &mut limit).await {
            Ok(()) => backoff = POLL,
            Err(e) if e.is_retryable() => {
                eprintln!("porthole: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        if !follow {
            return Ok(0);
        }
        // One more poll after the end: the last lines may land with it.
        let status = source.client.execution(&id).await.map(|e| e.status());
        if status.as_ref().is_ok_and(|s| s.is_finished()) {
            finished_polls += 1;
            if finished_polls > 1 {
                return Ok(0);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn fetch_once(
    source: &Source,
    id: &str,
    follower: &mut LogFollower,
    limit: &mut u64,
) -> Result<(), crate::source::ApiError> {
    // Widening may take a few rounds; each is one request.
    for _ in 0..8 {
        let page = source.client.events(id, *limit).await?;
        let (fresh, next) = follower.accept(*limit, &page);
        for e in &fresh {
            print_event(e);
        }
        match next {
            Next::Wait(l) => {
                *limit = l;
                return Ok(());
            }
            Next::FetchNow(l) => *limit = l,
        }
    }
    Ok(())
}

/// `porthole stop`.
pub async fn stop(paths: &Paths, args: &SourceArgs, exec: &str) -> anyhow::Result<i32> {
    let source = source::open(args, paths).await?;
    let execution = source.execution(exec).await?;
    if execution.status().is_finished() {
        println!(
            "execution #{} had already finished: {}",
            execution.counter, execution.status
        );
        return Ok(0);
    }
    source.client.stop(&execution.id).await?;
    println!("execution #{} stopping", execution.counter);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untitled_execution_is_titled_by_its_command() {
        let cmd = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_title(&cmd(&["python3", "train.py", "--lr", "3e-4"])),
            "python3 train.py --lr 3e-4"
        );
        let long = command_title(&cmd(&["python3", &"x".repeat(100)]));
        assert_eq!(long.chars().count(), 60);
        assert!(long.ends_with('…'));
    }
}
