//! Prometheus metrics of the daemon (served at `/metrics` by [`super::server`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub task_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabel {
    pub device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: String,
    pub engine: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirLabel {
    pub dir: String,
}

type HistogramFamily = Family<TypeLabel, Histogram, fn() -> Histogram>;

/// The daemon's counters. Totals are also kept as plain atomics for [`super::DaemonSummary`].
pub struct Metrics {
    registry: Registry,
    pulled: Family<TypeLabel, Counter>,
    proved: Family<TypeLabel, Counter>,
    failed: Family<TypeLabel, Counter>,
    submitted: Family<TypeLabel, Counter>,
    refused: Family<TypeLabel, Counter>,
    duration: HistogramFamily,
    in_flight: Gauge,
    device_faults: Family<DeviceLabel, Counter>,
    disk_free: Family<DirLabel, Gauge>,
    /// The directories whose filesystems' free space is read at each scrape.
    disks: Vec<(DirLabel, PathBuf)>,
    totals: [AtomicU64; 5],
}

/// Index of a total in [`Metrics::total`].
#[derive(Clone, Copy, Debug)]
pub enum Total {
    Pulled = 0,
    Proved = 1,
    Failed = 2,
    Submitted = 3,
    Refused = 4,
}

fn duration_histogram() -> Histogram {
    // 0.5 s … ~2.3 h.
    Histogram::new(exponential_buckets(0.5, 2.0, 15))
}

impl Metrics {
    /// `backends`: the backend of every device in use (one entry for the CPU); `disks`: the
    /// directories (by name) whose free space `disk_free_bytes` reports.
    pub fn new(backends: &[String], engine: &str, disks: Vec<(String, PathBuf)>) -> Self {
        let mut registry = Registry::with_prefix("prover");
        let pulled = Family::<TypeLabel, Counter>::default();
        let proved = Family::<TypeLabel, Counter>::default();
        let failed = Family::<TypeLabel, Counter>::default();
        let submitted = Family::<TypeLabel, Counter>::default();
        let refused = Family::<TypeLabel, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let in_flight = Gauge::default();
        let backend_info = Family::<BackendLabel, Gauge>::default();
        for backend in backends {
            backend_info
                .get_or_create(&BackendLabel {
                    backend: backend.clone(),
                    engine: engine.into(),
                })
                .set(1);
        }
        let device_faults = Family::<DeviceLabel, Counter>::default();
        for backend in backends {
            // Present (at 0) from the start, so a dashboard sees the series before any fault.
            let _ = device_faults.get_or_create(&DeviceLabel {
                device: backend.clone(),
            });
        }
        registry.register(
            "device_faults",
            "Proofs a device fault moved to the CPU backend (out of memory, launch failure, lost \
             device), by device",
            device_faults.clone(),
        );
        let disk_free = Family::<DirLabel, Gauge>::default();
        registry.register(
            "disk_free_bytes",
            "Bytes free on the filesystem of the keys directory (key and coset caches) and of the \
             task stack, read at each scrape",
            disk_free.clone(),
        );
        registry.register(
            "tasks_pulled",
            "Tasks received from the coordinator",
            pulled.clone(),
        );
        registry.register("tasks_proved", "Proofs produced", proved.clone());
        registry.register(
            "tasks_failed",
            "Tasks reported as failed (proving error or attempt cap)",
            failed.clone(),
        );
        registry.register(
            "tasks_submitted",
            "Submissions the coordinator accepted",
            submitted.clone(),
        );
        registry.register(
            "submissions_refused",
            "Submissions the coordinator definitively refused",
            refused.clone(),
        );
        registry.register(
            "proof_duration_seconds",
            "Wall time of one proving attempt",
            duration.clone(),
        );
        registry.register(
            "proofs_in_flight",
            "Proving attempts running now",
            in_flight.clone(),
        );
        registry.register(
            "backend",
            "Compute backend and engine in use (value 1)",
            backend_info,
        );
        Self {
            registry,
            pulled,
            proved,
            failed,
            submitted,
            refused,
            duration,
            in_flight,
            device_faults,
            disk_free,
            disks: disks
                .into_iter()
                .map(|(dir, path)| (DirLabel { dir }, path))
                .collect(),
            totals: Default::default(),
        }
    }

    pub fn count(&self, what: Total, task_type: u8) {
        let label = TypeLabel {
            task_type: task_type_name(task_type),
        };
        let family = match what {
            Total::Pulled => &self.pulled,
            Total::Proved => &self.proved,
            Total::Failed => &self.failed,
            Total::Submitted => &self.submitted,
            Total::Refused => &self.refused,
        };
        family.get_or_create(&label).inc();
        self.totals[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self, what: Total) -> u64 {
        self.totals[what as usize].load(Ordering::Relaxed)
    }

    pub fn observe_duration(&self, task_type: u8, seconds: f64) {
        self.duration
            .get_or_create(&TypeLabel {
                task_type: task_type_name(task_type),
            })
            .observe(seconds);
    }

    /// Counts a proof that a fault of `device` moved to the CPU backend.
    pub fn device_fault(&self, device: &str) {
        self.device_faults
            .get_or_create(&DeviceLabel {
                device: device.to_string(),
            })
            .inc();
    }

    pub fn in_flight_add(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        for (label, path) in &self.disks {
            if let Some(free) = prover_core::disk::free_bytes_for(path) {
                let free = i64::try_from(free).unwrap_or(i64::MAX);
                self.disk_free.get_or_create(label).set(free);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn task_type_name(t: u8) -> String {
    match t {
        1 => "chunk".into(),
        2 => "batch".into(),
        3 => "bundle".into(),
        other => other.to_string(),
    }
}
