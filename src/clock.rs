//! The daemon's clock: the real one, or a test clock for rehearsals (issue 11 part 6).
//!
//! Every driver that needs "now" (the scheduler and its lifecycle pass, the outbox and notice
//! workers, the API, the intake) takes it from [`now`]; the core never reads a clock at all.
//!
//! **The test clock** runs from a chosen start at a chosen speed, so the real binary can live
//! through a year of a domain's life in seconds:
//!
//! ```text
//! REGMAIL_TEST_CLOCK="start=2027-01-01T09:00:00Z,speed=86400"   # one day per second
//! ```
//!
//! It can never be switched on by accident in production, because it needs all of:
//!
//! 1. the environment variable `REGMAIL_TEST_CLOCK` (systemd's unit never sets it), and
//! 2. `[lifecycle] test_clock = true` in the configuration file, and
//! 3. outbound mail that stays on this machine: `[outbound] transport = "dir"`, or SMTP to
//!    127.0.0.1, ::1 or localhost (the sandbox and the test mail stack).
//!
//! The variable without the flag, or with mail leaving the machine, makes `serve` refuse to
//! start with the reason; the flag without the variable is the real clock. While it runs it
//! shouts: a warning at start and on every lifecycle pass, `"test_clock"` in `/healthz`, and
//! `regmail_test_clock 1` in `/metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

/// The environment variable that asks for the test clock.
pub const ENV: &str = "REGMAIL_TEST_CLOCK";

/// A test clock: `start` at the moment it was installed, then `speed` times real time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestClock {
    /// The time the clock shows when the daemon starts.
    pub start: Timestamp,
    /// How many seconds of clock time pass per real second (1 = real time; 0 = frozen).
    pub speed: f64,
}

struct Installed {
    clock: TestClock,
    origin: Instant,
}

static TEST: OnceLock<Installed> = OnceLock::new();

/// Now: the real time, or the test clock's when one is installed.
pub fn now() -> Timestamp {
    match TEST.get() {
        None => Timestamp::now(),
        Some(t) => t.clock.at(t.origin.elapsed()),
    }
}

/// The installed test clock, if any (for `/healthz`, `/metrics` and the log).
pub fn test_clock() -> Option<TestClock> {
    TEST.get().map(|t| t.clock)
}

impl TestClock {
    /// The clock's time after `elapsed` real time.
    pub fn at(&self, elapsed: std::time::Duration) -> Timestamp {
        let nanos = (elapsed.as_secs_f64() * self.speed * 1e9).min(1e18);
        self.start
            .checked_add(SignedDuration::from_nanos(nanos as i64))
            .unwrap_or(self.start)
    }

    /// Parses `start=<RFC 3339 time>,speed=<factor>` (speed optional, default 1).
    pub fn parse(value: &str) -> Result<TestClock, String> {
        let mut start = None;
        let mut speed = 1.0;
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("start", v)) => {
                    start = Some(v.trim().parse::<Timestamp>().map_err(|e| {
                        format!(
                            "{ENV}: start {v:?} is not a time such as 2027-01-01T09:00:00Z ({e})"
                        )
                    })?)
                }
                Some(("speed", v)) => {
                    speed = v
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 1e9)
                        .ok_or_else(|| format!("{ENV}: speed {v:?} is not a number in 0..=1e9"))?
                }
                _ => {
                    return Err(format!(
                        "{ENV}: {part:?} is not start=<time> or speed=<factor>"
                    ));
                }
            }
        }
        let start = start.ok_or_else(|| format!("{ENV}: start=<time> is missing"))?;
        Ok(TestClock { start, speed })
    }
}

/// Whether outbound mail stays on this machine: SMTP to a loopback host (or the `dir`
/// transport, which the caller checks).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Decides whether to install a test clock from the environment value, the configuration
/// flag and whether mail stays local; installs it. `Ok(None)`: the real clock.
pub fn install_from(
    env: Option<&str>,
    allowed: bool,
    mail_local: bool,
) -> Result<Option<TestClock>, String> {
    let Some(value) = env else {
        return Ok(None);
    };
    if !allowed {
        return Err(format!(
            "{ENV} is set but [lifecycle] test_clock is not true: the test clock is for rehearsals only; unset {ENV} (or set test_clock = true in a rehearsal configuration)"
        ));
    }
    if !mail_local {
        return Err(format!(
            "{ENV} is set but outbound mail leaves this machine: the test clock runs only with [outbound] transport = \"dir\" or SMTP to 127.0.0.1, ::1 or localhost"
        ));
    }
    let clock = TestClock::parse(value)?;
    TEST.set(Installed {
        clock,
        origin: Instant::now(),
    })
    .map_err(|_| "a test clock is installed already".to_owned())?;
    Ok(Some(clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_scales_elapsed_time() {
        let c = TestClock::parse("start=2027-01-01T00:00:00Z,speed=86400").unwrap();
        let t = c.at(std::time::Duration::from_secs(2));
        assert_eq!(t.to_string(), "2027-01-03T00:00:00Z");
        let frozen = TestClock::parse("start=2027-01-01T00:00:00Z,speed=0").unwrap();
        assert_eq!(frozen.at(std::time::Duration::from_secs(99)), frozen.start);
    }

    #[test]
    fn bad_values_are_named() {
        assert!(TestClock::parse("speed=2").unwrap_err().contains("start"));
        assert!(
            TestClock::parse("start=yesterday")
                .unwrap_err()
                .contains("start")
        );
        assert!(
            TestClock::parse("start=2027-01-01T00:00:00Z,speed=-1")
                .unwrap_err()
                .contains("speed")
        );
        assert!(TestClock::parse("start=2027-01-01T00:00:00Z,warp=9").is_err());
    }

    #[test]
    fn needs_flag_and_local_mail() {
        let v = Some("start=2027-01-01T00:00:00Z");
        assert!(
            install_from(v, false, true)
                .unwrap_err()
                .contains("test_clock")
        );
        assert!(install_from(v, true, false).unwrap_err().contains("leaves"));
        assert_eq!(install_from(None, true, true), Ok(None));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("smtp.example.com"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
