//! The local control plane over real HTTP: executions run under the real
//! `porthole-agent`, records and logs survive a restart, stop kills whole
//! process trees, and the API answers in Valohai's shapes.
//!
//! Every test has a data directory of its own and passes it (and the agent
//! binary) explicitly: tests run in parallel threads, so nothing here sets
//! process-wide environment variables.

use std::path::Path;
use std::time::{Duration, Instant};

use porthole::config::Paths;
use porthole::control::{self, Endpoint, Options};
use porthole::source::model::{EventsPage, Execution, LogEvent, Page, StatusEvents, Stream};
use serde_json::{json, Value};

/// A control plane serving in this process, with a client for it.
struct Plane {
    endpoint: Endpoint,
    task: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
}

fn paths(dir: &Path) -> Paths {
    Paths {
        config_dir: dir.join("config"),
        data_dir: dir.join("data"),
    }
}

fn options() -> Options {
    Options {
        agent: Some(env!("CARGO_BIN_EXE_porthole-agent").into()),
    }
}

fn debug_key() -> String {
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .expect("a key");
    key.public_key().to_openssh().expect("encodes")
}

/// Whether `python3` is there; without it the test is skipped (and fails
/// when `PORTHOLE_REQUIRE_PEERS=1`, as on CI).
fn have_python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("PORTHOLE_REQUIRE_PEERS").as_deref() != Ok("1"),
            "python3 is required (PORTHOLE_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping: python3 is not installed");
    }
    ok
}

impl Plane {
    async fn start(paths: &Paths) -> Plane {
        let (endpoint, task) = control::start_in_process_with(paths, &options())
            .await
            .expect("control plane starts");
        Plane::attach(endpoint, task)
    }

    /// A client for a control plane at `endpoint`; `task` is its in-process
    /// server, if any.
    fn attach(endpoint: control::Endpoint, task: tokio::task::JoinHandle<()>) -> Plane {
        Plane {
            endpoint,
            task,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    /// Ends this instance the way a dropped TUI would, and waits until it
    /// is gone.
    async fn shut(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}api/v0/{path}", self.endpoint.url)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("Authorization", format!("Token {}", self.endpoint.token))
    }

    async fn get_raw(&self, path: &str) -> (u16, Value) {
        let resp = self
            .auth(self.client.get(self.url(path)))
            .send()
            .await
            .expect("answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON"))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.get_raw(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_value(body).expect("the documented shape")
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .auth(self.client.post(self.url(path)))
            .json(body)
            .send()
            .await
            .expect("answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON"))
    }

    async fn create(&self, command: &[&str], extra: Value) -> Execution {
        let mut body = json!({ "command": command, "debug_key": debug_key() });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, answer) = self.post("executions/", &body).await;
        assert_eq!(status, 201, "{answer}");
        serde_json::from_value(answer).expect("an execution")
    }

    async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Execution) -> bool) -> Execution {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let e: Execution = self.get(&format!("executions/{id}/")).await;
            if done(&e) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_finished(&self, id: &str) -> Execution {
        self.wait_for(id, "the end", |e| e.status().is_finished())
            .await
    }

    async fn all_events(&self, id: &str) -> Vec<LogEvent> {
        let page: EventsPage = self.get(&format!("executions/{id}/events/?limit=0")).await;
        assert!(!page.truncated);
        assert_eq!(page.total as usize, page.events.len());
        page.events
    }
}

fn messages(events: &[LogEvent], stream: Stream) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.message.clone())
        .collect()
}

fn position(events: &[LogEvent], pred: impl Fn(&LogEvent) -> bool) -> usize {
    events.iter().position(pred).expect("the event is there")
}

/// Pids of processes whose argv is exactly `argv`.
fn processes_with(argv: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Zombies are dead already (only not reaped yet).
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            let args: Vec<&[u8]> = raw.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
            !zombie
                && args.len() == argv.len()
                && args.iter().zip(argv).all(|(a, b)| *a == b.as_bytes())
        })
        .collect()
}

async fn wait_processes(argv: &[&str], present: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(argv).is_empty() == present {
        assert!(
            Instant::now() < deadline,
            "{argv:?} should be {}",
            if present { "running" } else { "gone" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_execution_runs_and_is_served_in_valohai_shapes() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::start(&paths(dir.path())).await;

    let me: Value = plane.get("users/me/").await;
    assert_eq!(me["id"], 1);
    assert!(
        me["username"].as_str().is_some_and(|u| !u.is_empty()),
        "{me}"
    );
    let projects: Page<Value> = plane.get("projects/?limit=9000").await;
    assert_eq!(projects.count, 1);
    assert_eq!(projects.results[0]["id"], "local");
    assert_eq!(
        projects.results[0]["description"],
        "executions on this machine"
    );
    let project: Value = plane.get("projects/local/").await;
    assert_eq!(project["name"], "local");

    let created = plane
        .create(
            &["python3", "-c", "print(1)"],
            json!({"title": "one", "project": "local"}),
        )
        .await;
    assert_eq!(created.counter, 1);
    assert!(
        matches!(created.status.as_str(), "queued" | "started"),
        "{created:?}"
    );
    assert_eq!(
        uuid::Uuid::parse_str(&created.id)
            .map(|u| u.get_version_num())
            .ok(),
        Some(4)
    );
    let id = created.id.clone();
    let url = format!("{}api/v0/executions/{id}/", plane.endpoint.url);
    assert_eq!(created.url.as_deref(), Some(url.as_str()));
    let urls = created.urls.clone().expect("urls");
    assert_eq!(urls.stop.as_deref(), Some(format!("{url}stop/").as_str()));
    assert!(urls.display.is_some());

    let done = plane.wait_finished(&id).await;
    assert_eq!(done.status, "complete", "{done:?}");
    assert_eq!(done.title.as_deref(), Some("one"));
    assert_eq!(done.step.as_deref(), Some("local"));
    assert_eq!(done.project.as_ref().map(|p| p.id()), Some("local"));
    assert!(
        done.end_time.is_some() && done.duration.is_some_and(|d| d > 0.0),
        "{done:?}"
    );
    assert!(done.ctime.is_some() && done.mtime.is_some());
    let command = done
        .command
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(command.starts_with("python3 -c "), "{command}");

    // The same execution by counter and as the latest.
    for key in ["local:1", "local:latest"] {
        let e: Execution = plane.get(&format!("executions/{key}/")).await;
        assert_eq!(e.id, id);
    }
    let list: Page<Execution> = plane
        .get("executions/?project=local&limit=10&ordering=-counter&deleted=false&whatever=1")
        .await;
    assert_eq!(list.count, 1);
    assert_eq!(list.results[0].id, id);
    assert_eq!(list.results[0].url.as_deref(), Some(url.as_str()));

    // The log: the status events in order around the command's output.
    let events = plane.all_events(&id).await;
    assert_eq!(messages(&events, Stream::Stdout), ["1"]);
    let queued = position(&events, |e| e.message == "status: queued");
    let started = position(&events, |e| e.message == "status: started");
    let ssh = position(&events, |e| e.message.starts_with("::ssh::"));
    let output = position(&events, |e| e.stream == Stream::Stdout);
    let complete = position(&events, |e| e.message == "status: complete");
    assert!(
        queued < started && started < ssh && ssh < output && output < complete,
        "{events:#?}"
    );
    assert!(
        events.windows(2).all(|w| w[0].time <= w[1].time),
        "times in order"
    );

    // The announcement is where Valohai's clients look for it.
    let status: StatusEvents = plane
        .get(&format!("executions/{id}/status-events/?limit=100"))
        .await;
    assert_eq!(status.total as usize, status.status_events.len());
    assert!(status
        .status_events
        .iter()
        .all(|e| e.stream == Stream::Status));
    let line = status
        .status_events
        .iter()
        .find_map(|e| e.message.strip_prefix("::ssh::"))
        .expect("the ::ssh:: announcement");
    let announced: Value = serde_json::from_str(line).expect("JSON after ::ssh::");
    assert_eq!(announced["address"], "127.0.0.1");
    assert!(
        announced["port"].as_u64().is_some_and(|p| p > 0),
        "{announced}"
    );
    assert!(
        announced["host_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("SHA256:")),
        "{announced}"
    );
    assert!(status.status_events.iter().any(|e| e
        .message
        .starts_with("$ ssh -i <path-to-private-key> 127.0.0.1 -p ")));

    // Errors are JSON with a detail.
    let (code, body) = plane.get_raw("executions/local:99/").await;
    assert_eq!((code, body), (404, json!({"detail": "Not found."})));
    let (code, body) = plane.get_raw("executions/no-such-id/events/").await;
    assert_eq!(code, 404, "{body}");
    let resp = plane
        .auth(plane.client.post(plane.url("executions/")))
        .header("Content-Type", "application/json")
        .body("{\"command\": [")
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("JSON");
    assert!(body["detail"].is_string(), "{body}");
    let (code, body) = plane.post("executions/", &json!({"command": []})).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = plane
        .post(
            "executions/",
            &json!({"command": ["true"], "linger": "soon"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("linger")),
        "{body}"
    );
    plane.shut().await;
}

#[tokio::test]
async fn a_burst_of_20000_lines_arrives_complete_and_in_order() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::start(&paths(dir.path())).await;
    let e = plane
        .create(
            &[
                "python3",
                "-c",
                "import sys; [print(i) for i in range(20000)]",
            ],
            json!({}),
        )
        .await;
    let done = plane.wait_finished(&e.id).await;
    assert_eq!(done.status, "complete", "{done:?}");

    let events = plane.all_events(&e.id).await;
    let expected: Vec<String> = (0..20000).map(|i| i.to_string()).collect();
    assert_eq!(messages(&events, Stream::Stdout), expected);

    // Without a limit: the last 100, flagged as truncated, like Valohai.
    let page: EventsPage = plane.get(&format!("executions/{}/events/", e.id)).await;
    assert_eq!(page.events.len(), 100);
    assert!(page.truncated);
    assert_eq!(page.total as usize, events.len());
    assert_eq!(page.events, events[events.len() - 100..]);
    let page: EventsPage = plane
        .get(&format!("executions/{}/events/?limit=5", e.id))
        .await;
    assert_eq!(page.events, events[events.len() - 5..]);

    // And on disk, in the same order.
    let log = paths(dir.path())
        .data_dir
        .join("control/executions")
        .join(&e.id)
        .join("events.jsonl");
    let text = std::fs::read_to_string(log).expect("the log file");
    let on_disk: Vec<LogEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    assert_eq!(on_disk, events);
    plane.shut().await;
}

#[tokio::test]
async fn stop_kills_the_whole_process_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::start(&paths(dir.path())).await;
    let e = plane
        .create(&["sh", "-c", "sleep 4711 & sleep 4712"], json!({}))
        .await;
    wait_processes(&["sleep", "4711"], true).await;
    wait_processes(&["sleep", "4712"], true).await;

    let (code, body) = plane
        .post(&format!("executions/{}/stop/", e.id), &json!(null))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        matches!(body["status"].as_str(), Some("stopping" | "stopped")),
        "{body}"
    );
    let done = plane.wait_finished(&e.id).await;
    assert_eq!(done.status, "stopped", "{done:?}");
    wait_processes(&["sleep", "4711"], false).await;
    wait_processes(&["sleep", "4712"], false).await;

    let events = plane.all_events(&e.id).await;
    let stopping = position(&events, |e| e.message == "status: stopping");
    let stopped = position(&events, |e| e.message.starts_with("status: stopped"));
    assert!(stopping < stopped, "{events:#?}");

    // Stopping a finished execution changes nothing.
    let (code, body) = plane
        .post(&format!("executions/{}/stop/", e.id), &json!(null))
        .await;
    assert_eq!((code, body["status"].as_str()), (200, Some("stopped")));
    plane.shut().await;
}

#[tokio::test]
async fn exit_codes_and_lingering_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::start(&paths(dir.path())).await;
    let failed = plane
        .create(&["sh", "-c", "echo oops >&2; exit 3"], json!({}))
        .await;
    let lingering = plane
        .create(
            &["sh", "-c", "echo lingering; exit 4"],
            json!({"linger": "10m"}),
        )
        .await;

    let done = plane.wait_finished(&failed.id).await;
    assert_eq!(done.status, "error");
    assert_eq!(done.status_detail.as_deref(), Some("exit code 3"));
    assert_eq!(
        messages(&plane.all_events(&failed.id).await, Stream::Stderr),
        ["oops"]
    );

    // The command ended but the agent keeps SSH up: still running.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = plane.all_events(&lingering.id).await;
        if messages(&events, Stream::Stderr)
            .iter()
            .any(|m| m.contains("SSH stays up"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no linger notice: {events:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e: Execution = plane.get(&format!("executions/{}/", lingering.id)).await;
    assert_eq!(e.status, "started");
    let list: Page<Execution> = plane.get("executions/?status=incomplete").await;
    assert_eq!(
        list.results.iter().map(|e| e.counter).collect::<Vec<_>>(),
        [2]
    );

    // A stop ends the linger without waiting for the SIGKILL grace.
    let asked = Instant::now();
    let (code, _) = plane
        .post(&format!("executions/{}/stop/", lingering.id), &json!({}))
        .await;
    assert_eq!(code, 200);
    let done = plane.wait_finished(&lingering.id).await;
    assert_eq!(done.status, "stopped");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
    plane.shut().await;
}

#[tokio::test]
async fn lists_paginate_filter_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plane = Plane::start(&paths(dir.path())).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let e = plane.create(&["true"], json!({})).await;
        plane.wait_finished(&e.id).await;
        ids.push(e.id);
    }
    let first: Page<Execution> = plane.get("executions/?limit=2").await;
    assert_eq!(first.count, 3);
    assert_eq!(
        first.results.iter().map(|e| e.counter).collect::<Vec<_>>(),
        [3, 2]
    );
    assert!(first.previous.is_none());
    let next = first.next.expect("a next page");
    assert!(next.starts_with(&plane.endpoint.url), "{next}");
    let resp = plane
        .auth(plane.client.get(&next))
        .send()
        .await
        .expect("answers");
    let second: Page<Execution> = resp.json().await.expect("a page");
    assert_eq!(
        second.results.iter().map(|e| e.counter).collect::<Vec<_>>(),
        [1]
    );
    assert!(second.next.is_none() && second.previous.is_some());

    let asc: Page<Execution> = plane.get("executions/?ordering=counter").await;
    assert_eq!(
        asc.results.iter().map(|e| e.counter).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let some: Page<Execution> = plane.get("executions/?counter=1&counter=3").await;
    assert_eq!(
        some.results.iter().map(|e| e.counter).collect::<Vec<_>>(),
        [3, 1]
    );
    let complete: Page<Execution> = plane.get("executions/?status=complete&status=error").await;
    assert_eq!(complete.count, 3);
    let incomplete: Page<Execution> = plane.get("executions/?status=incomplete").await;
    assert_eq!(incomplete.count, 0);
    let other: Page<Execution> = plane.get("executions/?project=elsewhere").await;
    assert_eq!(other.count, 0);
    let (code, body) = plane.get_raw("executions/?limit=many").await;
    assert_eq!(code, 400, "{body}");
    plane.shut().await;
}

#[tokio::test]
async fn a_restart_keeps_records_and_full_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let plane = Plane::start(&paths).await;
    // One control plane per data directory.
    let second = control::start_in_process_with(&paths, &options()).await;
    let err = second.expect_err("a second instance is refused");
    assert!(format!("{err:#}").contains("already running"), "{err:#}");
    // Clients find it.
    let found = control::discover(&paths).await.expect("discovered");
    assert_eq!(found, plane.endpoint);

    let finished = plane
        .create(&["sh", "-c", "seq 1 3000; echo bye >&2"], json!({}))
        .await;
    assert_eq!(plane.wait_finished(&finished.id).await.status, "complete");
    let before = plane.all_events(&finished.id).await;
    let running = plane
        .create(&["sleep", "4713"], json!({"title": "sleeper"}))
        .await;
    wait_processes(&["sleep", "4713"], true).await;
    let token = plane.endpoint.token.clone();
    plane.shut().await;
    // Dropping the instance killed what it ran.
    wait_processes(&["sleep", "4713"], false).await;
    assert!(
        control::discover(&paths).await.is_none(),
        "the endpoint file is gone"
    );

    let plane = Plane::start(&paths).await;
    assert_eq!(plane.endpoint.token, token, "the token is kept");
    let list: Page<Execution> = plane.get("executions/").await;
    assert_eq!(
        list.results.iter().map(|e| e.counter).collect::<Vec<_>>(),
        [2, 1]
    );
    let after = plane.all_events(&finished.id).await;
    assert_eq!(after, before);
    let expected: Vec<String> = (1..=3000).map(|i| i.to_string()).collect();
    assert_eq!(messages(&after, Stream::Stdout), expected);
    let stopped: Execution = plane.get(&format!("executions/{}/", running.id)).await;
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    assert_eq!(stopped.title.as_deref(), Some("sleeper"));

    // Counters go on from the highest.
    let next = plane.create(&["true"], json!({})).await;
    assert_eq!(next.counter, 3);
    plane.wait_finished(&next.id).await;
    plane.shut().await;
}

#[tokio::test]
async fn the_token_is_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let plane = Plane::start(&paths).await;
    let url = plane.url("executions/");
    for header in [None, Some("Token wrong"), Some("Bearer x"), Some("Token ")] {
        let mut req = plane.client.get(&url);
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let resp = req.send().await.expect("answers");
        assert_eq!(resp.status().as_u16(), 401, "{header:?}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body, json!({"detail": "Invalid token."}));
    }
    let token_file = control::token_file(&paths);
    let on_disk = std::fs::read_to_string(&token_file).expect("token file");
    assert_eq!(on_disk.trim(), plane.endpoint.token);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&token_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, _) = plane.get_raw("users/me/").await;
    assert_eq!(code, 200);
    plane.shut().await;
}

/// `porthole serve --listen LISTEN` as a child process, with the test's
/// directories and the agent built with it.
fn serve_process(paths: &Paths, listen: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_porthole"));
    cmd.args(["serve", "--listen", listen])
        .env("PORTHOLE_DATA_DIR", &paths.data_dir)
        .env("PORTHOLE_CONFIG_DIR", &paths.config_dir)
        .env("PORTHOLE_AGENT_BIN", env!("CARGO_BIN_EXE_porthole-agent"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// The parent of `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Even killed with SIGKILL (no chance to stop anything), `porthole serve`
/// leaves no execution running: its agents stop when their parent is gone,
/// and take the command's tree with them. A restarted control plane then
/// records the execution as interrupted.
#[tokio::test]
async fn a_killed_control_plane_leaves_no_execution_behind() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let mut child = serve_process(&paths, "127.0.0.1:0")
        .spawn()
        .expect("porthole serve starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("announces in time")
        .expect("reads")
        .expect("a line");
    let plane = Plane::attach(
        control::discover(&paths).await.expect("discovered"),
        tokio::spawn(async {}),
    );
    let e = plane.create(&["sleep", "4716"], json!({})).await;
    wait_processes(&["sleep", "4716"], true).await;
    let sleep = processes_with(&["sleep", "4716"])[0];
    let agent = parent_of(sleep).expect("the agent");
    assert!(
        std::fs::read_to_string(format!("/proc/{agent}/cmdline"))
            .is_ok_and(|c| c.contains("porthole-agent")),
        "the sleep's parent is the agent"
    );

    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    wait_processes(&["sleep", "4716"], false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(agent) {
        assert!(
            Instant::now() < deadline,
            "the agent outlived its control plane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let again = Plane::start(&paths).await;
    let record = again.wait_finished(&e.id).await;
    assert_eq!(record.status, "error", "{record:?}");
    again.shut().await;
}

/// `porthole serve` as a process: it announces itself, SIGTERM stops the
/// running executions (recorded `stopped`, tree gone) and removes the
/// endpoint file; a taken port is a clear error.
#[tokio::test]
async fn porthole_serve_stops_its_executions_on_sigterm() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let serve = |listen: &str| serve_process(&paths, listen);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let out = tokio::time::timeout(Duration::from_secs(30), serve(&taken_addr).output())
        .await
        .expect("exits")
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&taken_addr), "{stderr}");

    let mut child = serve("127.0.0.1:0").spawn().expect("porthole serve starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("announces in time")
        .expect("reads")
        .expect("a line");
    let api = first
        .strip_prefix("porthole control plane: ")
        .expect("the announcement")
        .to_string();
    assert!(
        api.starts_with("http://127.0.0.1:") && api.ends_with("/api/v0/"),
        "{api}"
    );
    let second = lines.next_line().await.expect("reads").expect("a line");
    assert_eq!(
        second,
        format!("token file: {}", control::token_file(&paths).display())
    );

    let endpoint = control::discover(&paths).await.expect("discovered");
    assert_eq!(format!("{}api/v0/", endpoint.url), api);
    let plane = Plane::attach(endpoint, tokio::spawn(async {}));
    let e = plane.create(&["sleep", "4714"], json!({})).await;
    wait_processes(&["sleep", "4714"], true).await;

    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signalled");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits in time")
        .expect("waits");
    assert!(status.success(), "{status}");
    wait_processes(&["sleep", "4714"], false).await;
    assert!(!control::endpoint_file(&paths).exists());

    let record = paths
        .data_dir
        .join("control/executions")
        .join(&e.id)
        .join("record.json");
    let record: Execution =
        serde_json::from_str(&std::fs::read_to_string(record).expect("the record")).expect("JSON");
    assert_eq!(record.status, "stopped", "{record:?}");
}
