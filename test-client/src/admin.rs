//! `admin`: operator commands on the background jobs, straight to Redis
//! through `gamemesh-jobs` (no game server needs to be up).
//!
//! - `admin jobs list`: queued, retrying and running jobs.
//! - `admin jobs failed`: the failed list.
//! - `admin jobs inspect <id>`: every stored field of one job.
//! - `admin jobs requeue <id>`: a failed job back in the queue.
//! - `admin event schedule --name N --start-in 10s --duration 1m`: a timed
//!   in-game event (start and end notices to every online player).

use std::time::Duration;

use anyhow::Context;
use gamemesh_jobs::catalog;
use gamemesh_jobs::store::now_ms;
use gamemesh_jobs::{JobInfo, JobStore};

async fn store(redis: &str, timeout: Duration) -> anyhow::Result<JobStore> {
    JobStore::connect(redis, timeout)
        .await
        .with_context(|| format!("cannot reach Redis at {redis} (set --redis or REDIS_CONNECTION)"))
}

fn line(j: &JobInfo) -> String {
    let state = j.state.map(|s| s.as_str()).unwrap_or("?");
    let due = (j.run_at_ms - now_ms()) as f64 / 1000.0;
    let mut s = format!(
        "{}  {}  {state}  attempts {}/{}  due in {due:.1} s",
        j.id, j.kind, j.attempts, j.max_attempts
    );
    if let Some(e) = &j.last_error {
        s.push_str(&format!("  last error: {e}"));
    }
    s
}

/// Prints how many `jobs` there are (`what` after the number), then one
/// line each.
fn print_jobs(jobs: &[JobInfo], what: &str) {
    println!("{} {what}", jobs.len());
    for j in jobs {
        println!("{}", line(j));
    }
}

/// `admin jobs list`.
pub async fn list(redis: &str, timeout: Duration) -> anyhow::Result<bool> {
    let jobs = store(redis, timeout).await?.list().await?;
    print_jobs(&jobs, "job(s) queued or running");
    Ok(true)
}

/// `admin jobs failed`.
pub async fn failed(redis: &str, timeout: Duration) -> anyhow::Result<bool> {
    let jobs = store(redis, timeout).await?.failed().await?;
    print_jobs(&jobs, "failed job(s)");
    Ok(true)
}

/// `admin jobs inspect <id>`; `Ok(false)` if there is no such job.
pub async fn inspect(redis: &str, id: &str, timeout: Duration) -> anyhow::Result<bool> {
    let Some(j) = store(redis, timeout).await?.inspect(id).await? else {
        println!("no job {id}");
        return Ok(false);
    };
    println!("{}", line(&j));
    let mut fields: Vec<_> = j.fields.iter().collect();
    fields.sort();
    for (k, v) in fields {
        println!("  {k}: {v}");
    }
    Ok(true)
}

/// `admin jobs requeue <id>`; `Ok(false)` if it is not in the failed list.
pub async fn requeue(redis: &str, id: &str, timeout: Duration) -> anyhow::Result<bool> {
    if store(redis, timeout).await?.requeue(id).await? {
        println!("job {id} re-queued");
        Ok(true)
    } else {
        println!("job {id} is not in the failed list");
        Ok(false)
    }
}

/// `admin event schedule`.
pub async fn schedule_event(
    redis: &str,
    name: &str,
    start_in: Duration,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let s = store(redis, timeout).await?;
    let (start, end) = catalog::schedule_game_event(&s, name, start_in, duration).await?;
    println!(
        "event {name:?} scheduled: starts in {} s (job {start}), ends {} s after it started (job {end})",
        start_in.as_secs_f64(),
        duration.as_secs_f64()
    );
    Ok(true)
}

/// Parses `90`, `90s`, `500ms`, `2m` or `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m, 1h)"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
