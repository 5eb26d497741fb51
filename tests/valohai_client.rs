//! The Valohai API client (`porthole::source`) against the local control
//! plane over real HTTP: the same code path Valohai users take.

mod common;

use std::time::{Duration, Instant};

use porthole::commands::source::local_client;
use porthole::config::Paths;
use porthole::control::{self, Options};
use porthole::source::credentials::{Credentials, Token};
use porthole::source::follow::{LogFollower, Next};
use porthole::source::model::CreateExecution;
use porthole::source::scanner::Scanner;
use porthole::source::valohai::ExecutionFilter;
use porthole::source::{ApiClient, ApiError, Status, Stream};

fn paths(dir: &std::path::Path) -> Paths {
    Paths {
        config_dir: dir.join("config"),
        data_dir: dir.join("data"),
    }
}

fn options() -> Options {
    Options {
        agent: Some(common::agent_bin()),
    }
}

fn debug_key() -> String {
    russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("key")
        .public_key()
        .to_openssh()
        .expect("openssh")
}

fn create(argv: &[&str], title: &str) -> CreateExecution {
    CreateExecution {
        project: Some("local".into()),
        command: argv.iter().map(|s| s.to_string()).collect(),
        title: Some(title.into()),
        linger: None,
        debug_key: Some(debug_key()),
        cwd: None,
    }
}

async fn wait_status(client: &ApiClient, id: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.execution(id).await.expect("detail").status();
        if done(&status) || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows a log the way `porthole logs --follow` does, polling while the
/// command writes, until the execution has ended and one more poll is done.
async fn follow_all(client: &ApiClient, id: &str) -> Vec<String> {
    let mut follower = LogFollower::new();
    let mut limit = follower.first_limit();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after_end = 0;
    while Instant::now() < deadline {
        let page = client.events(id, limit).await.expect("events");
        let (fresh, next) = follower.accept(limit, &page);
        lines.extend(
            fresh
                .into_iter()
                .filter(|e| e.stream == Stream::Stdout)
                .map(|e| e.message),
        );
        match next {
            Next::FetchNow(l) => {
                limit = l;
                continue;
            }
            Next::Wait(l) => limit = l,
        }
        if client
            .execution(id)
            .await
            .expect("detail")
            .status()
            .is_finished()
        {
            after_end += 1;
            if after_end > 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_lists_reads_follows_stops_and_survives_a_restart() {
    let Some(_) = common::require_peer("python3") else {
        return;
    };
    let dir = common::temp_dir();
    let paths = paths(dir.path());
    let (endpoint, task) = control::start_in_process_with(&paths, &options())
        .await
        .expect("starts");
    let client = local_client(&endpoint).expect("client");
    client.me().await.expect("token accepted");

    // A burst of 20,000 lines written in well under a second, followed
    // with a 100-event window: nothing lost, nothing reordered.
    let burst = client
        .create(&create(
            &[
                "python3",
                "-c",
                "import time\ntime.sleep(1)\nfor i in range(20000): print(i)",
            ],
            "burst",
        ))
        .await
        .expect("created");
    let lines = follow_all(&client, &burst.id).await;
    let expected: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    assert_eq!(lines.len(), expected.len(), "every line arrives");
    assert!(lines == expected, "in order");

    // A long-running one: detail by counter, status events, list filters.
    let sleeper = client
        .create(&create(&["sh", "-c", "sleep 4811 & sleep 4812"], "sleeper"))
        .await
        .expect("created");
    assert_eq!(
        wait_status(&client, &sleeper.id, |s| *s == Status::Started).await,
        Status::Started
    );
    let by_counter = client
        .execution(&format!("local:{}", sleeper.counter))
        .await
        .expect("by counter");
    assert_eq!(by_counter.id, sleeper.id);
    // The agent announces once it listens, just after the start.
    let mut scanner = Scanner::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while scanner.latest().is_none() && Instant::now() < deadline {
        let status = client
            .status_events(&sleeper.id)
            .await
            .expect("status events");
        scanner = Scanner::new();
        for e in &status.status_events {
            scanner.feed(&e.message);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ep = scanner
        .latest()
        .expect("the agent's announcement is a status event");
    assert_eq!(ep.host, "127.0.0.1");
    assert!(
        ep.host_key
            .as_deref()
            .is_some_and(|k| k.starts_with("SHA256:")),
        "{ep:?}"
    );
    let all = client
        .executions(&ExecutionFilter::default())
        .await
        .expect("list");
    assert_eq!(
        all.iter().map(|e| e.counter).collect::<Vec<_>>(),
        vec![sleeper.counter, burst.counter]
    );
    let running = client
        .executions(&ExecutionFilter {
            statuses: vec!["incomplete".into()],
            ..Default::default()
        })
        .await
        .expect("filtered list");
    assert_eq!(running.len(), 1);

    // Stop: the whole tree goes.
    common::wait_until(common::deadline_in(Duration::from_secs(10)), || {
        !common::pids_matching("sleep 4812").is_empty()
    });
    client.stop(&sleeper.id).await.expect("stop");
    assert_eq!(
        wait_status(&client, &sleeper.id, Status::is_finished).await,
        Status::Stopped
    );
    let gone = common::wait_until(common::deadline_in(Duration::from_secs(10)), || {
        common::pids_matching("sleep 4811").is_empty()
            && common::pids_matching("sleep 4812").is_empty()
    });
    assert!(gone, "no process of the stopped execution survives");

    // Restart over the same data directory: records and full logs remain.
    task.abort();
    let _ = task.await;
    let (endpoint2, task2) = control::start_in_process_with(&paths, &options())
        .await
        .expect("restarts");
    let client2 = local_client(&endpoint2).expect("client");
    let again = client2
        .executions(&ExecutionFilter::default())
        .await
        .expect("list after restart");
    assert_eq!(again.len(), 2);
    let page = client2.events(&burst.id, 0).await.expect("full log");
    let stdout: Vec<String> = page
        .events
        .into_iter()
        .filter(|e| e.stream == Stream::Stdout)
        .map(|e| e.message)
        .collect();
    assert!(stdout == expected, "the whole log survives the restart");

    // A wrong token is a clear 401, not a crash.
    let wrong = ApiClient::new(&Credentials {
        host: endpoint2.url.clone(),
        token: Token::new("not-the-token"),
        project: Some("local".into()),
        origin: "test".into(),
    })
    .expect("client");
    let err = wrong
        .executions(&ExecutionFilter::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, ApiError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rejected the API token"), "{err}");
    assert!(
        !err.to_string().contains("not-the-token"),
        "the token is never printed"
    );

    // Unknown execution: 404 in words.
    let err = client2.execution("no-such-id").await.expect_err("404");
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    task2.abort();
    let _ = task2.await;
}

#[tokio::test]
async fn unreachable_and_malformed_servers_are_errors_not_panics() {
    // A port nothing listens on.
    let port = common::free_port();
    let client = ApiClient::new(&Credentials {
        host: format!("http://127.0.0.1:{port}/"),
        token: Token::new("t"),
        project: None,
        origin: "test".into(),
    })
    .expect("client");
    let err = client.me().await.expect_err("refused");
    assert!(err.is_retryable(), "{err:?}");

    // A server answering garbage JSON and a 503.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for answer in [
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"count\":",
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ] {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    let client = ApiClient::new(&Credentials {
        host: format!("http://{addr}/"),
        token: Token::new("t"),
        project: None,
        origin: "test".into(),
    })
    .expect("client");
    let err = client
        .executions(&ExecutionFilter::default())
        .await
        .expect_err("bad json");
    assert!(matches!(err, ApiError::InvalidJson { .. }), "{err:?}");
    let err = client.me().await.expect_err("503");
    assert!(
        matches!(err, ApiError::Retryable { status: 503, .. }),
        "{err:?}"
    );
}
