//! Logins per client address (`logins_per_minute_per_client`). A login is the one request an
//! unauthenticated client can make that writes to the store (its challenge is recorded as used,
//! durably) and checks a signature; without a limit one address could log in back to back and
//! slow every prover's requests (the load example's `--login-flood`: on PostgreSQL, provers'
//! get_task p50 from 3.1 to 11.4 ms under 8 clients logging in from one address). Addresses are
//! grouped as the per-client connection cap groups them ([`crate::serve`]: an IPv4 address, an
//! IPv6 /64), and each group has a GCRA allowance from `governor`: `n` logins at once, then one
//! every minute / `n`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The allowance of every client address (none when the limit is 0).
pub(crate) struct LoginLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl LoginLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// Takes one login from the allowance of `ip`'s client, or says how long until the next.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&crate::serve::client_of(ip))
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forgets the clients whose allowance is whole again, so that memory follows the clients
    /// of the last minute, not every address ever seen (run by the coordinator's timer).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn each_client_has_its_own_allowance_and_zero_is_no_limit() {
        let limit = LoginLimit::new(3);
        for _ in 0..3 {
            assert!(limit.check(ip("10.0.0.1")).is_ok());
        }
        let wait = limit.check(ip("10.0.0.1")).expect_err("past the allowance");
        // One login a minute / 3 comes back: at most 20 s to wait.
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another address, and another /64, have their own; one /64 shares one.
        assert!(limit.check(ip("10.0.0.2")).is_ok());
        for i in 1..=3 {
            assert!(limit.check(ip(&format!("2001:db8::{i}"))).is_ok());
        }
        assert!(limit.check(ip("2001:db8::ffff")).is_err());
        assert!(limit.check(ip("2001:db8:0:1::1")).is_ok());
        assert_eq!(limit.clients(), 4);
        let none = LoginLimit::new(0);
        for _ in 0..10_000 {
            assert!(none.check(ip("10.0.0.1")).is_ok());
        }
        // Clients that used some of their allowance are kept.
        limit.forget_idle();
        assert_eq!(limit.clients(), 4);
    }
}
