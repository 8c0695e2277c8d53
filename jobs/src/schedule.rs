//! Cron expressions: parsing and next-run computation, always in UTC.
//!
//! Expressions have six fields, seconds first (`sec min hour day month
//! weekday`), as the `cron` crate reads them: `0 0 0 * * *` is midnight UTC
//! every day, `*/10 * * * * *` every ten seconds.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use cron::Schedule;

use crate::JobsError;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The expression as written (stored in Redis, shown to operators).
    expr: String,
    /// The parsed form.
    schedule: Schedule,
}

impl CronSchedule {
    /// Parses `expr`.
    pub fn parse(expr: &str) -> Result<Self, JobsError> {
        let schedule = Schedule::from_str(expr).map_err(|e| JobsError::BadCron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            expr: expr.to_string(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first occurrence strictly after `after_ms` (Unix milliseconds),
    /// in Unix milliseconds.
    pub fn next_after_ms(&self, after_ms: i64) -> Result<i64, JobsError> {
        let after = Utc
            .timestamp_millis_opt(after_ms)
            .single()
            .unwrap_or_else(Utc::now);
        self.next_after(&after)
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| JobsError::CronExhausted(self.expr.clone()))
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: &DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(after).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn midnight_utc_is_the_next_day_at_zero() {
        let s = CronSchedule::parse("0 0 0 * * *").unwrap();
        assert_eq!(
            s.next_after(&at("2026-11-22T20:31:05Z")),
            Some(at("2026-11-23T00:00:00Z"))
        );
        // Exactly at a tick: the next one, never the same one again.
        assert_eq!(
            s.next_after(&at("2026-11-23T00:00:00Z")),
            Some(at("2026-11-24T00:00:00Z"))
        );
    }

    #[test]
    fn every_four_hours_and_every_ten_seconds() {
        let s = CronSchedule::parse("0 0 */4 * * *").unwrap();
        assert_eq!(
            s.next_after(&at("2026-01-01T05:59:59Z")),
            Some(at("2026-01-01T08:00:00Z"))
        );
        let s = CronSchedule::parse("*/10 * * * * *").unwrap();
        let ms = at("2026-01-01T00:00:01Z").timestamp_millis();
        assert_eq!(
            s.next_after_ms(ms).unwrap(),
            at("2026-01-01T00:00:10Z").timestamp_millis()
        );
    }

    #[test]
    fn weekly_on_monday_crosses_a_month() {
        let s = CronSchedule::parse("0 30 12 * * Mon").unwrap();
        assert_eq!(
            s.next_after(&at("2026-11-28T00:00:00Z")),
            Some(at("2026-11-30T12:30:00Z"))
        );
    }

    #[test]
    fn a_bad_expression_says_what_to_write() {
        let e = CronSchedule::parse("every day").unwrap_err().to_string();
        assert!(e.contains("every day") && e.contains("0 0 0 * * *"), "{e}");
    }
}
