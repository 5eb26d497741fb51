//! `run`, `list`, `logs` and `stop`: executions through the source.

use std::io::Write as _;
use std::time::Duration;

use super::source::{self, Source};
use crate::cli::SourceArgs;
use crate::config::Paths;
use crate::control;
use crate::source::follow::{self, LogFollower, Next};
use crate::source::model::CreateExecution;
use crate::source::model::LogEventRef;
use crate::source::valohai::ExecutionFilter;
use crate::source::Stream;

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
    // `--linger` was checked by the command line already (a usage error).
    let key = paths.default_key();
    let public = if key.exists() {
        super::keygen::public_line(&key)?
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
    let rows: Vec<ListRow> = rows
        .into_iter()
        .map(|(e, ep)| ListRow {
            counter: e.counter.to_string(),
            status: e.status.clone(),
            age: crate::source::model::age(e.ctime.as_deref()),
            ssh: ep.map_or_else(|| "-".to_string(), |ep| format!("{}:{}", ep.host, ep.port)),
            title: e.label(),
        })
        .collect();
    let mut out = std::io::stdout().lock();
    out.write_all(list_table(&rows).as_bytes())?;
    Ok(0)
}

/// One line of `porthole list`, as the words it shows.
struct ListRow {
    counter: String,
    status: String,
    age: String,
    ssh: String,
    title: String,
}

/// `porthole list`'s table: every column as wide as its widest cell
/// (header included), as `docker ps` and `kubectl get` do, so that a long
/// status (`stopping_hard`, or one this version does not know) or address
/// pushes its column wider instead of the rest of the line. The title
/// comes last and whole: a pipe gets all of it, and a terminal that wraps
/// it still has every other column in line.
fn list_table(rows: &[ListRow]) -> String {
    const HEADER: [&str; 5] = ["#", "STATUS", "AGE", "SSH", "TITLE"];
    // Numbers line up on their last digit; words on their first letter.
    const RIGHT: [bool; 5] = [true, false, true, false, false];
    const GAP: &str = "  ";
    let header = HEADER.map(String::from);
    let body = rows
        .iter()
        .map(|r| [&r.counter, &r.status, &r.age, &r.ssh, &r.title].map(|cell| printable(cell)));
    let lines: Vec<[String; 5]> = std::iter::once(header).chain(body).collect();
    let mut widths = [0; 5];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i > 0 {
                text.push_str(GAP);
            }
            let width = if i + 1 == line.len() { 0 } else { widths[i] };
            text.push_str(&if RIGHT[i] {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            });
        }
        // An empty title leaves no trailing gap.
        table.push_str(text.trim_end());
        table.push('\n');
    }
    table
}

/// A cell on one line: control characters (a newline in a `python -c`
/// command's title, a terminal escape in a title from the server) are
/// shown escaped (`\n`, `\u{1b}`) rather than breaking the table or
/// reaching the terminal.
fn printable(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_string();
    }
    cell.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where `porthole logs` prints: stdout lines buffered (a long log is
/// printed at the speed of the pipe, not one write per line), status and
/// stderr lines on stderr, after what came before them on stdout.
struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    /// Set when stdout is gone (`| head`): the rest is not wanted.
    closed: bool,
    failed: Option<std::io::Error>,
}

impl Printer {
    fn new() -> Self {
        Printer {
            out: std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout()),
            closed: false,
            failed: None,
        }
    }

    fn print(&mut self, e: &LogEventRef<'_>) {
        if self.closed {
            return;
        }
        let written = match e.stream {
            Stream::Stdout | Stream::Other => self
                .out
                .write_all(e.message.as_bytes())
                .and_then(|()| self.out.write_all(b"\n")),
            Stream::Stderr | Stream::Status => self.out.flush().map(|()| {
                // A marker of lost lines says so plainly.
                if e.is_gap_marker() {
                    eprintln!("porthole: {}", e.message);
                } else {
                    eprintln!("{}", e.message);
                }
            }),
        };
        self.check(written);
    }

    fn flush(&mut self) {
        if !self.closed {
            let flushed = self.out.flush();
            self.check(flushed);
        }
    }

    fn check(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.closed = true;
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                self.failed = Some(e);
            }
        }
    }
}

/// `porthole logs`: the whole log (or its last `tail` lines), streamed,
/// then with `follow` every new line until the execution ends.
pub async fn logs(
    paths: &Paths,
    args: &SourceArgs,
    exec: &str,
    follow: bool,
    tail: Option<u64>,
) -> anyhow::Result<i32> {
    let source = source::open(args, paths).await?;
    let execution = source.execution(exec).await?;
    let id = execution.id.clone();
    let mut follower = tail.map_or_else(LogFollower::new, LogFollower::tail);
    let mut limit = follower.first_limit();
    let mut backoff = POLL;
    let mut finished_polls = 0;
    let mut printer = Printer::new();
    if tail == Some(0) && !follow {
        return Ok(0);
    }
    loop {
        let fetched = fetch_once(&source, &id, &mut follower, &mut limit, &mut printer).await;
        printer.flush();
        if let Some(e) = printer.failed.take() {
            return Err(anyhow::Error::new(e).context("cannot write the log out"));
        }
        if printer.closed {
            return Ok(0);
        }
        match fetched {
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
    printer: &mut Printer,
) -> Result<(), crate::source::ApiError> {
    // Widening may take a few rounds; each is one request.
    for _ in 0..8 {
        let next =
            follow::fetch(&source.client, id, follower, *limit, |e| printer.print(&e)).await?;
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

    fn row(counter: u64, status: &str, age: &str, ssh: &str, title: &str) -> ListRow {
        ListRow {
            counter: counter.to_string(),
            status: status.into(),
            age: age.into(),
            ssh: ssh.into(),
            title: title.into(),
        }
    }

    #[test]
    fn list_columns_stay_aligned_for_long_statuses_and_titles() {
        let title = format!("{}{}", "a".repeat(30), "b".repeat(30));
        assert_eq!(title.chars().count(), 60);
        let rows = [
            row(7, "started", "5s", "127.0.0.1:36409", "short"),
            row(1234, "stopping_hard", "3583d", "-", &title),
            row(3, "some_unknown_long_status", "2h", "-", "python3 train.py"),
            row(12, "complete", "-", "-", ""),
        ];
        let table = list_table(&rows);
        let lines: Vec<Vec<char>> = table.lines().map(|l| l.chars().collect()).collect();
        assert_eq!(lines.len(), 1 + rows.len(), "{table}");
        let cells: Vec<[&str; 5]> = std::iter::once(["#", "STATUS", "AGE", "SSH", "TITLE"])
            .chain(rows.iter().map(|r| {
                [
                    r.counter.as_str(),
                    r.status.as_str(),
                    r.age.as_str(),
                    r.ssh.as_str(),
                    r.title.as_str(),
                ]
            }))
            .collect();
        // Each column's slot: as wide as its widest cell, two spaces apart,
        // at the same offsets on every line.
        let mut widths = [0; 5];
        for line in &cells {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut slots = [(0, 0); 5];
        let mut start = 0;
        for (slot, w) in slots.iter_mut().zip(widths) {
            *slot = (start, start + w);
            start += w + 2;
        }
        for (line, cells) in lines.iter().zip(&cells) {
            let text = |(from, to): (usize, usize)| -> String {
                line.get(from..to.min(line.len()))
                    .unwrap_or_default()
                    .iter()
                    .collect()
            };
            for i in 0..4 {
                let slot = text(slots[i]);
                assert_eq!(slot.trim(), cells[i], "column {i} of\n{table}");
                // `#` and AGE line up on their last character, the others
                // on their first.
                if i == 0 || i == 2 {
                    assert!(slot.ends_with(cells[i]), "column {i} of\n{table}");
                } else {
                    assert!(slot.starts_with(cells[i]), "column {i} of\n{table}");
                }
                let gap = text((slots[i].1, slots[i].1 + 2));
                assert!(gap == "  " || (gap.is_empty() && i == 3), "{table}");
            }
            // The title is last and whole.
            assert_eq!(text((slots[4].0, line.len())), cells[4], "{table}");
            assert_ne!(line.last(), Some(&' '), "{table}");
        }
        let want = [
            "   #  STATUS                      AGE  SSH              TITLE".to_string(),
            "   7  started                      5s  127.0.0.1:36409  short".to_string(),
            format!("1234  stopping_hard             3583d  -                {title}"),
            "   3  some_unknown_long_status     2h  -                python3 train.py".to_string(),
            "  12  complete                      -  -".to_string(),
        ];
        assert_eq!(table, want.join("\n") + "\n");
    }

    #[test]
    fn control_characters_in_a_cell_cannot_break_the_table() {
        let table = list_table(&[row(1, "started", "5s", "-", "python3 -c 'a\nb'\u{1b}[2J")]);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains(r"python3 -c 'a\nb'\u{1b}[2J"), "{table}");
        assert!(!table.contains('\u{1b}'), "{table}");
    }
}
