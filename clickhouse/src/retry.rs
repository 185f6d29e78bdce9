use std::future::Future;
use std::time::Duration;

/// Exponential backoff with a cap and an optional bound on attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Total attempts, the first included; `None` retries until success.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Runs `op` until it succeeds or `backoff.max_attempts` is spent, sleeping between attempts.
/// Each failure is logged with its attempt number; the last error is returned.
pub async fn retry_with_backoff<T, E, F, Fut>(backoff: Backoff, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(error) => {
                if backoff.max_attempts.is_some_and(|max| attempt >= max) {
                    return Err(error);
                }
                let delay = backoff.delay(attempt);
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %error, "Retrying after a failure.");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: None,
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(100), Duration::from_secs(1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn gives_up_after_max_attempts() {
        let mut calls = 0;
        let r: Result<(), String> = retry_with_backoff(
            Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
                max_attempts: Some(3),
            },
            || {
                calls += 1;
                async { Err("down".to_string()) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
    }
}
