//! One worker loop: resume what the stack holds, else poll for a task; prove it (attempts counted
//! before each run); deliver the proof or failure report until the coordinator acknowledges it.
//!
//! The loop reads the worker's stack entry at the top of every round, so resuming after a crash or
//! restart is the ordinary path, not a special case:
//! - an entry with a submission → deliver it (retrying with exponential backoff while the
//!   coordinator is unreachable; deleted only on acceptance or a definitive refusal);
//! - an entry without one → count an attempt and prove (or report failure_type 1 at the cap);
//! - no entry → `get_task`, store the task, loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use prover_core::wire::{failure_type, proof_status, SubmitProofRequest, Task, TaskPayload};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{remote_text, CoordinatorClient, SubmitOutcome};
use super::identity::Identity;
use super::metrics::Total;
use super::server::{Shared, WorkerState};
use super::stack::{Attempt, StackEntry, StackError, TaskStack};
use super::TaskProver;

/// Timing and limits of a worker.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub max_attempts: u32,
    pub poll_interval: Duration,
    pub poll_jitter: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub drain_timeout: Duration,
    pub backend: String,
    /// Fixed rng seed of every proof (`None`: fresh OS randomness per proof).
    pub seed: Option<u64>,
}

/// A worker fails only on a storage error (the stack must never be silently bypassed).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("task stack call interrupted: {0}")]
    Join(String),
}

pub struct Worker {
    pub identity: Identity,
    pub client: CoordinatorClient,
    pub stack: TaskStack,
    pub prover: Arc<dyn TaskProver>,
    pub shared: Arc<Shared>,
    pub settings: WorkerSettings,
    /// The device this worker proves on (`None`: the prover's own backend).
    pub device: Option<Arc<dyn gpu::ComputeBackend>>,
    pub shutdown: CancellationToken,
}

impl Worker {
    /// Runs until `shutdown` (returns `Ok`) or a storage error.
    pub async fn run(self) -> Result<(), WorkerError> {
        let span = tracing::info_span!(
            "worker",
            index = self.identity.index,
            key = %short(&self.identity.public_key)
        );
        self.run_inner().instrument(span).await
    }

    async fn run_inner(&self) -> Result<(), WorkerError> {
        let mut poll_backoff = self.backoff();
        while !self.shutdown.is_cancelled() {
            match self.entry().await? {
                Some(entry) if entry.submission.is_some() => self.deliver(entry).await?,
                Some(entry) => {
                    let span = task_span(&entry.task, &self.settings.backend);
                    self.prove(entry).instrument(span).await?
                }
                None => {
                    if self.poll().await? {
                        poll_backoff = self.backoff();
                    } else {
                        let delay = poll_backoff.next().unwrap_or(self.settings.retry_max);
                        self.status(WorkerState::Backoff, None, None);
                        self.sleep(delay).await;
                    }
                }
            }
        }
        self.status(WorkerState::Idle, None, None);
        Ok(())
    }

    /// One `get_task`. Returns false when the coordinator could not be reached (the caller backs
    /// off exponentially); sleeps the poll interval itself when there is no work or on a refusal.
    async fn poll(&self) -> Result<bool, WorkerError> {
        self.status(WorkerState::Idle, None, None);
        // A poll in flight is abandoned on shutdown: an assignment whose reply is lost is re-sent
        // by the coordinator when this worker asks again (or times out there).
        let reply = tokio::select! {
            r = self.client.get_task() => r,
            _ = self.shutdown.cancelled() => return Ok(true),
        };
        match reply {
            Ok(Some(task)) if !plain_ids(&task) => {
                tracing::warn!(
                    task_id = %remote_text(&task.task_id),
                    uuid = %remote_text(&task.uuid),
                    "the coordinator handed out a task whose uuid, task_id or hard_fork_name is \
                     not short printable text; not stored, polling again after the interval"
                );
                self.status(WorkerState::Backoff, None, None);
                self.sleep(self.poll_pause()).await;
                Ok(true)
            }
            Ok(Some(task)) => {
                tracing::info!(task_id = %task.task_id, task_type = task.task_type, uuid = %task.uuid, "task received");
                self.shared.metrics.count(Total::Pulled, task.task_type);
                let pk = self.identity.public_key.clone();
                self.blocking(move |s| s.put_task(&pk, &task)).await?;
                Ok(true)
            }
            Ok(None) => {
                tracing::debug!("no task available");
                self.sleep(self.poll_pause()).await;
                Ok(true)
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "get_task: coordinator unreachable; backing off");
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(error = %e, "get_task refused; polling again after the interval");
                self.status(WorkerState::Backoff, None, None);
                self.sleep(self.poll_pause()).await;
                Ok(true)
            }
        }
    }

    /// Counts an attempt, proves, and stores the submission (proof or failure report).
    async fn prove(&self, entry: StackEntry) -> Result<(), WorkerError> {
        let task = entry.task;
        let pk = self.identity.public_key.clone();
        let max = self.settings.max_attempts;
        let id = task.task_id.clone();
        let attempt = self
            .blocking(move |s| s.begin_attempt(&pk, &id, max))
            .await?;
        let n = match attempt {
            Attempt::Exhausted { attempts } => {
                tracing::error!(
                    attempts,
                    "attempt cap reached: reporting the task as failed (failure_type 1)"
                );
                self.shared.metrics.count(Total::Failed, task.task_type);
                let msg = format!(
                    "prover gave up after {attempts} proving attempts that did not complete (crash, kill or shutdown during each)"
                );
                return self
                    .store_submission(failure(&task, failure_type::PANIC, msg))
                    .await;
            }
            Attempt::Start(n) => n,
        };
        self.status(WorkerState::Proving, Some(&task.task_id), Some(n));
        tracing::info!(attempt = n, max_attempts = max, "proving");
        self.shared.metrics.in_flight_add(1);
        let started = Instant::now();
        let prover = self.prover.clone();
        let job_task = task.clone();
        let seed = self.settings.seed;
        let device = self.device.clone();
        let mut job = tokio::task::spawn_blocking(move || {
            let rng = match seed {
                Some(seed) => ChaCha20Rng::seed_from_u64(seed),
                None => ChaCha20Rng::from_rng(rand::rngs::OsRng)
                    .map_err(|e| -> super::ProveError { format!("seeding the rng: {e}").into() })?,
            };
            prover.prove_on(device.as_ref(), &job_task, rng)
        });
        let result = tokio::select! {
            r = &mut job => Some(r),
            _ = self.shutdown.cancelled() => None,
        };
        let result = match result {
            Some(r) => r,
            None => {
                tracing::info!(
                    drain_timeout_sec = self.settings.drain_timeout.as_secs(),
                    "shutdown requested: letting the running proof finish"
                );
                match tokio::time::timeout(self.settings.drain_timeout, &mut job).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.shared.metrics.in_flight_add(-1);
                        tracing::warn!(
                            attempt = n,
                            "drain timeout: leaving the task in the stack for the next start"
                        );
                        return Ok(());
                    }
                }
            }
        };
        self.shared.metrics.in_flight_add(-1);
        let seconds = started.elapsed().as_secs_f64();
        self.shared
            .metrics
            .observe_duration(task.task_type, seconds);
        let submission = match result {
            Ok(Ok(proof)) => match serde_json::to_string(&proof) {
                Ok(json) => {
                    if let Some(fault) = &proof.meta.fallback {
                        tracing::warn!(
                            device = %self.settings.backend,
                            fault = %fault,
                            "a device fault interrupted the proof; it was made on the CPU backend"
                        );
                        self.shared.metrics.device_fault(&self.settings.backend);
                    }
                    tracing::info!(seconds, backend = %proof.meta.backend, "proved");
                    self.shared.metrics.count(Total::Proved, task.task_type);
                    SubmitProofRequest {
                        uuid: task.uuid.clone(),
                        task_id: task.task_id.clone(),
                        task_type: task.task_type,
                        status: proof_status::OK,
                        proof: json,
                        failure_type: failure_type::UNDEFINED,
                        failure_msg: String::new(),
                    }
                }
                Err(e) => {
                    self.shared.metrics.count(Total::Failed, task.task_type);
                    failure(
                        &task,
                        failure_type::NO_PANIC,
                        format!("serializing the proof: {e}"),
                    )
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "proving failed; reporting failure_type 2");
                self.shared.metrics.count(Total::Failed, task.task_type);
                failure(&task, failure_type::NO_PANIC, e.to_string())
            }
            Err(e) => {
                // A panic: like a crash, it used up the attempt; the next round tries again or,
                // at the cap, reports failure_type 1.
                tracing::error!(attempt = n, error = %e, "proving panicked");
                return Ok(());
            }
        };
        self.store_submission(submission).await
    }

    async fn store_submission(&self, submission: SubmitProofRequest) -> Result<(), WorkerError> {
        let pk = self.identity.public_key.clone();
        self.blocking(move |s| s.put_submission(&pk, &submission))
            .await
    }

    /// Sends the stored submission until the coordinator accepts or definitively refuses it;
    /// returns early (keeping it stored) on shutdown.
    async fn deliver(&self, entry: StackEntry) -> Result<(), WorkerError> {
        let Some(body) = entry.submission else {
            return Ok(());
        };
        let span = task_span(&entry.task, &self.settings.backend);
        async {
            let mut backoff = self.backoff();
            loop {
                self.status(
                    WorkerState::Submitting,
                    Some(&body.task_id),
                    Some(entry.attempts),
                );
                match self.client.submit_proof(&body).await {
                    Ok(outcome) => {
                        match &outcome {
                            SubmitOutcome::Accepted => {
                                tracing::info!(status = body.status, "submission accepted");
                                self.shared.metrics.count(Total::Submitted, body.task_type);
                            }
                            SubmitOutcome::Refused { errcode, errmsg } => {
                                tracing::warn!(errcode, errmsg = %errmsg, "submission definitively refused; deleting it from the stack");
                                self.shared.metrics.count(Total::Refused, body.task_type);
                            }
                        }
                        let pk = self.identity.public_key.clone();
                        let id = body.task_id.clone();
                        self.blocking(move |s| s.remove(&pk, &id)).await?;
                        return Ok(());
                    }
                    Err(e) => {
                        let delay = backoff.next().unwrap_or(self.settings.retry_max);
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "submission failed; keeping the proof and retrying");
                        self.status(
                            WorkerState::Backoff,
                            Some(&body.task_id),
                            Some(entry.attempts),
                        );
                        if !self.sleep(delay).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn entry(&self) -> Result<Option<StackEntry>, WorkerError> {
        let pk = self.identity.public_key.clone();
        self.blocking(move |s| s.get(&pk)).await
    }

    /// Runs a stack transaction on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, WorkerError>
    where
        T: Send + 'static,
        F: FnOnce(&TaskStack) -> Result<T, StackError> + Send + 'static,
    {
        let stack = self.stack.clone();
        tokio::task::spawn_blocking(move || f(&stack))
            .await
            .map_err(|e| WorkerError::Join(e.to_string()))?
            .map_err(WorkerError::from)
    }

    /// Sleeps unless shut down first; returns false on shutdown.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    fn poll_pause(&self) -> Duration {
        let jitter_ms = self.settings.poll_jitter.as_millis() as u64;
        let jitter = if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ms)
        };
        self.settings.poll_interval + Duration::from_millis(jitter)
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_initial)
            .with_max_delay(self.settings.retry_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    fn status(&self, state: WorkerState, task_id: Option<&str>, attempt: Option<u32>) {
        self.shared
            .set(self.identity.index, state, task_id, attempt);
    }
}

/// Longest identifier (`uuid`, `task_id`) a task may carry; Scroll's are hashes and numbers.
pub const MAX_ID_BYTES: usize = 256;
/// Longest `hard_fork_name` a task may carry.
pub const MAX_FORK_NAME_BYTES: usize = 64;
/// Characters of a failure message sent to the coordinator (the rest is cut).
pub const MAX_FAILURE_MSG_CHARS: usize = 4096;

/// Whether a task's identifiers are short and printable: they are logged, stored and sent back.
fn plain_ids(task: &Task) -> bool {
    let plain = |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
    plain(&task.uuid, MAX_ID_BYTES)
        && plain(&task.task_id, MAX_ID_BYTES)
        && plain(&task.hard_fork_name, MAX_FORK_NAME_BYTES)
}

fn failure(task: &Task, kind: u8, mut msg: String) -> SubmitProofRequest {
    if let Some((cut, _)) = msg.char_indices().nth(MAX_FAILURE_MSG_CHARS) {
        msg.truncate(cut);
        msg.push_str(" …(cut)");
    }
    SubmitProofRequest {
        uuid: task.uuid.clone(),
        task_id: task.task_id.clone(),
        task_type: task.task_type,
        status: proof_status::ERROR,
        proof: String::new(),
        failure_type: kind,
        failure_msg: msg,
    }
}

fn task_span(task: &Task, backend: &str) -> tracing::Span {
    let k = match task.payload() {
        Ok(TaskPayload::Chunk(d)) => Some(d.config.k),
        Ok(TaskPayload::Batch(d)) => Some(d.config.k),
        Ok(TaskPayload::Bundle(d)) => Some(d.config.k),
        Err(_) => None,
    };
    tracing::info_span!(
        "task",
        task_id = %task.task_id,
        task_type = task.task_type,
        k = k,
        backend = %backend
    )
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Task {
        Task {
            uuid: "u".into(),
            task_id: id.into(),
            task_type: 1,
            task_data: "{}".into(),
            hard_fork_name: prover_core::wire::HARD_FORK_NAME.into(),
        }
    }

    #[test]
    fn a_failure_message_is_cut_to_its_limit_on_a_character_boundary() {
        let short = failure(&task("t"), failure_type::NO_PANIC, "bad".into());
        assert_eq!(short.failure_msg, "bad");
        let long = "é".repeat(MAX_FAILURE_MSG_CHARS + 10);
        let cut = failure(&task("t"), failure_type::NO_PANIC, long);
        assert!(cut.failure_msg.ends_with(" …(cut)"));
        assert_eq!(
            cut.failure_msg.chars().count(),
            MAX_FAILURE_MSG_CHARS + " …(cut)".chars().count()
        );
    }

    #[test]
    fn identifiers_must_be_short_printable_text() {
        assert!(plain_ids(&task("chunk-12")));
        assert!(!plain_ids(&task("a\nb")));
        assert!(!plain_ids(&task(&"x".repeat(MAX_ID_BYTES + 1))));
        let mut t = task("t");
        t.hard_fork_name = "x".repeat(MAX_FORK_NAME_BYTES + 1);
        assert!(!plain_ids(&t));
    }
}
