//! Limits on what one client may take (issue 23, item 5): a request rate per principal and
//! a cap on open event streams. Each refusal names the limit and the flag that sets it.
//! (Per-department SQL quotas live with the statements, in `citybrain_sql::SqlLimits`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use crate::error::ErrorCode;
use crate::listen::ConnLimits;

/// Token buckets per principal, and the count of open streams.
#[derive(Debug)]
pub struct ClientGate {
    per_second: f64,
    burst: f64,
    /// Tokens left and when they were last counted, per principal name.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    max_streams: usize,
    streams: Arc<AtomicUsize>,
}

impl ClientGate {
    pub fn new(limits: &ConnLimits) -> Self {
        Self {
            per_second: f64::from(limits.rate_per_principal),
            burst: f64::from(limits.rate_burst.max(limits.rate_per_principal).max(1)),
            buckets: Mutex::new(HashMap::new()),
            max_streams: limits.max_event_streams,
            streams: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts one request of `principal`; how long to wait when it is over its rate.
    pub fn admit(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate lock");
        // Every authenticated request passes here: no allocation once a principal is known.
        if !buckets.contains_key(principal) {
            buckets.insert(principal.to_string(), (self.burst, now));
        }
        let (tokens, at) = buckets.get_mut(principal).expect("inserted above");
        let refill = now.saturating_duration_since(*at).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }

    /// The refusal of a request over the rate.
    pub fn refusal(&self, principal: &str, wait: Duration) -> Response {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "{principal} is over its rate of {} requests/s (burst {}; `citybrain up --rate-per-principal`); retry after {seconds} s",
                self.per_second, self.burst
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&seconds.to_string()).expect("digits"),
        );
        response
    }

    /// A place for one more event stream, held until the stream ends.
    pub fn stream(&self) -> Result<StreamSlot, ApiError> {
        let open = self.streams.fetch_add(1, Ordering::AcqRel);
        if open >= self.max_streams {
            self.streams.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TooManyStreams,
                format!(
                    "{} event streams are open, the most this server allows (`citybrain up --max-event-streams`); close one or retry later",
                    self.max_streams
                ),
            ));
        }
        Ok(StreamSlot(self.streams.clone()))
    }

    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }
}

/// One open event stream; dropping it (the stream ends) frees the place.
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(rate: u32, burst: u32, streams: usize) -> ClientGate {
        ClientGate::new(&ConnLimits {
            rate_per_principal: rate,
            rate_burst: burst,
            max_event_streams: streams,
            ..ConnLimits::default()
        })
    }

    #[test]
    fn a_principal_gets_its_burst_then_its_rate_and_others_are_not_touched() {
        let g = gate(10, 20, 1);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(g.admit("a", t0).is_ok());
        }
        let wait = g.admit("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(
            g.admit("b", t0).is_ok(),
            "another principal has its own bucket"
        );
        // A second later ten more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert!(g.admit("a", t1).is_ok());
        }
        assert!(g.admit("a", t1).is_err());
        // Off when the rate is 0.
        let off = gate(0, 0, 1);
        for _ in 0..1000 {
            assert!(off.admit("a", t0).is_ok());
        }
    }

    #[test]
    fn streams_are_capped_and_freed_when_they_end() {
        let g = gate(0, 0, 2);
        let a = g.stream().unwrap();
        let _b = g.stream().unwrap();
        assert!(g.stream().is_err());
        drop(a);
        assert!(g.stream().is_ok());
    }
}
