//! Prometheus metrics of the coordinator.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::StatusReport;

type Labels = Vec<(&'static str, String)>;

/// Buckets of `request_seconds`: 0.25 ms to 2.4 s, each 1.3× the one before (fine enough to read
/// a p99 of a few milliseconds from them).
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 1.3, 36))
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    tasks: Family<Labels, Gauge>,
    pub assignments: Family<Labels, Counter>,
    pub timeouts: Counter,
    pub submissions: Family<Labels, Counter>,
    pub verifications: Family<Labels, Counter>,
    pub verify_seconds: Histogram,
    /// Time from a request's arrival at its route to its response, by route.
    pub request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub logins: Family<Labels, Counter>,
    /// The settlement loop's counters.
    pub settle: std::sync::Arc<crate::settle::LoopStats>,
    l1_items: Family<Labels, Gauge>,
    l1_confirmations: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coordinator");
        let tasks = Family::<Labels, Gauge>::default();
        let assignments = Family::<Labels, Counter>::default();
        let timeouts = Counter::default();
        let submissions = Family::<Labels, Counter>::default();
        let verifications = Family::<Labels, Counter>::default();
        let verify_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let logins = Family::<Labels, Counter>::default();
        let request_seconds: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(request_histogram);
        registry.register("tasks", "Tasks by type and state", tasks.clone());
        registry.register(
            "assignments",
            "Task hand-outs by type (resent: the same outstanding task again)",
            assignments.clone(),
        );
        registry.register(
            "assignment_timeouts",
            "Assignments that timed out",
            timeouts.clone(),
        );
        registry.register(
            "submissions",
            "submit_proof calls by result",
            submissions.clone(),
        );
        registry.register(
            "verifications",
            "Proof verifications by task type and result",
            verifications.clone(),
        );
        registry.register(
            "verify_seconds",
            "Duration of proof verification",
            verify_seconds.clone(),
        );
        registry.register(
            "logins",
            "Login attempts by result (ok, refused, limited: past the address's allowance)",
            logins.clone(),
        );
        registry.register(
            "request_seconds",
            "Time from a request's arrival at its route to its response (the body sent after), \
             by endpoint",
            request_seconds.clone(),
        );
        let settle = std::sync::Arc::new(crate::settle::LoopStats::default());
        let l1_items = Family::<Labels, Gauge>::default();
        let l1_confirmations = Gauge::default();
        registry.register(
            "l1_items",
            "Settlement items: enqueued, finalized (on L1, confirmed)",
            l1_items.clone(),
        );
        registry.register(
            "l1_confirmations",
            "Blocks containing or following the current item's mined finalisation (0: not mined)",
            l1_confirmations.clone(),
        );
        registry.register(
            "l1_head_block",
            "The L1 node's head at the last poll",
            settle.head.clone(),
        );
        registry.register(
            "l1_resends",
            "Finalisations re-sent with a higher fee",
            settle.resends.clone(),
        );
        registry.register(
            "l1_reorgs",
            "Mined finalisations a reorg dropped (sent again)",
            settle.reorgs.clone(),
        );
        registry.register(
            "l1_refusals",
            "Items whose proof the rollup contract refused",
            settle.refusals.clone(),
        );
        registry.register(
            "l1_finalized_here",
            "Items this process saw become final",
            settle.finalized.clone(),
        );
        registry.register(
            "l1_rpc_errors",
            "Polls that failed because the L1 node did not answer",
            settle.rpc_errors.clone(),
        );
        Self {
            settle,
            l1_items,
            l1_confirmations,
            registry,
            tasks,
            assignments,
            timeouts,
            submissions,
            verifications,
            verify_seconds,
            request_seconds,
            logins,
        }
    }

    /// Prometheus text format, with the task gauges taken from `status`.
    pub fn render(&self, status: &StatusReport) -> Result<String, std::fmt::Error> {
        for (kind, states) in &status.counts {
            for (state, n) in states {
                self.tasks
                    .get_or_create(&vec![("type", kind.clone()), ("state", state.clone())])
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        if let Some(l1) = &status.l1 {
            let set = |state: &str, n: u64| {
                self.l1_items
                    .get_or_create(&vec![("state", state.to_string())])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            };
            set("enqueued", l1.enqueued);
            set("finalized", l1.finalized);
            let head = u64::try_from(self.settle.head.get()).unwrap_or(0);
            let confirmations = l1.mined_block.map_or(0, |b| (head + 1).saturating_sub(b));
            self.l1_confirmations
                .set(i64::try_from(confirmations).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Records one request to `endpoint` (a route's path: a fixed set, never what a client
    /// chose).
    pub fn observe_request(&self, endpoint: &str, seconds: f64) {
        self.request_seconds
            .get_or_create(&vec![("endpoint", endpoint.to_string())])
            .observe(seconds);
    }

    pub fn inc(family: &Family<Labels, Counter>, labels: &[(&'static str, &str)]) {
        let l: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        family.get_or_create(&l).inc();
    }
}
