use shadowdiff_net::Backoff;
use std::future::Future;

/// Runs `op` until it succeeds or `max_attempts` (the first included; `None`: until success)
/// are spent, sleeping `backoff`'s next delay between attempts. Each failure is logged with its
/// attempt number; the last error is returned.
pub async fn retry_with_backoff<T, E, F, Fut>(
    mut backoff: Backoff,
    max_attempts: Option<u32>,
    mut op: F,
) -> Result<T, E>
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
                if max_attempts.is_some_and(|max| attempt >= max) {
                    return Err(error);
                }
                let delay = backoff.next_delay();
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %error, "Retrying after a failure.");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn gives_up_after_max_attempts() {
        let mut calls = 0;
        let r: Result<(), String> = retry_with_backoff(
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            Some(3),
            || {
                calls += 1;
                async { Err("down".to_string()) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn returns_the_first_success() {
        let mut calls = 0;
        let r: Result<u32, String> = retry_with_backoff(
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            None,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err("not yet".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
    }
}
