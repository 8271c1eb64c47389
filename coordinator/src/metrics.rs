//! Prometheus metrics of the coordinator.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::StatusReport;

type Labels = Vec<(&'static str, String)>;

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    tasks: Family<Labels, Gauge>,
    pub assignments: Family<Labels, Counter>,
    pub timeouts: Counter,
    pub submissions: Family<Labels, Counter>,
    pub verifications: Family<Labels, Counter>,
    pub verify_seconds: Histogram,
    pub logins: Family<Labels, Counter>,
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
        registry.register("logins", "Login attempts by result", logins.clone());
        Self {
            registry,
            tasks,
            assignments,
            timeouts,
            submissions,
            verifications,
            verify_seconds,
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
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn inc(family: &Family<Labels, Counter>, labels: &[(&'static str, &str)]) {
        let l: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        family.get_or_create(&l).inc();
    }
}
