//! Events polls against a running control plane: `limit=100` one after
//! another, then 1000 at once. `benches/logs.sh` runs it on a 10 M-line
//! log (with `PORTHOLE_BENCH_URL`, `_TOKEN` and `_EXEC` set); without
//! them it says so and does nothing, so that a plain `cargo bench` does
//! not need a prepared control plane.

use std::time::{Duration, Instant};

const SEQUENTIAL: usize = 200;
const CONCURRENT: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn poll(client: &reqwest::Client, url: &str, token: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let resp = client
        .get(url)
        .header("Authorization", format!("Token {token}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if body.len() < 10 {
        return Err("an empty page".into());
    }
    Ok(started.elapsed())
}

fn main() {
    let (Ok(base), Ok(token), Ok(exec)) = (
        std::env::var("PORTHOLE_BENCH_URL"),
        std::env::var("PORTHOLE_BENCH_TOKEN"),
        std::env::var("PORTHOLE_BENCH_EXEC"),
    ) else {
        eprintln!("logs_poll: PORTHOLE_BENCH_URL/_TOKEN/_EXEC not set; run benches/logs.sh");
        return;
    };
    let url = format!(
        "{}/api/v0/executions/{exec}/events/?limit=100",
        base.trim_end_matches('/')
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logs_poll: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let result: Result<(), String> = rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        // Warm the connection and the page cache.
        poll(&client, &url, &token).await?;
        let mut times = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            times.push(poll(&client, &url, &token).await?);
        }
        times.sort();
        println!(
            "sequential polls (limit=100), {SEQUENTIAL}: median {}, p95 {}, max {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(percentile(&times, 1.0))
        );
        // 1000 at once, each on a connection of its own (a fresh client
        // per request would measure TLS-less connects; a shared pool
        // opens as many connections as requests in flight).
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tasks.spawn(async move { poll(&client, &url, &token).await });
        }
        let mut times = Vec::with_capacity(CONCURRENT);
        while let Some(joined) = tasks.join_next().await {
            times.push(joined.map_err(|e| e.to_string())??);
        }
        let wall = started.elapsed();
        times.sort();
        println!(
            "concurrent polls (limit=100), {CONCURRENT} at once: median {}, p99 {}, max {}, all answered in {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&times, 1.0)),
            ms(wall)
        );
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("logs_poll: {e}");
        std::process::exit(1);
    }
}
