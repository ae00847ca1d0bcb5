//! Fleets: N complete charge points in one process, each the same stack as a single emulated
//! charger (every profile, every key, its own state directory, configuration, journal and
//! simulated EV), on one tokio runtime with no thread of their own.
//!
//! - `template`: ids from a template such as `SITE-{n:04}`;
//! - `shard`: the K-th of M slices of the numbers 1 to N, for several processes or hosts;
//! - a ramp (`ramp` per second) or all at once (a boot storm after a power cut);
//! - `sessions`: seedable random sessions;
//! - `summary`: the live counters and latency histograms, fed by each charge point's probe.
//!
//! What is shared: the runtime, the journal's group committer (one flush for the records of
//! every charge point in a short window), trusted keys, the key registry and message schemas
//! (static in the stack). What each charge point keeps: its actor and connection tasks, a
//! WebSocket with a 4 KiB read buffer, a small event channel (none is built unless traced) and
//! a short log ring.

mod sessions;
mod shard;
mod summary;
mod template;

pub use sessions::{SessionPlan, SessionSpec};
pub use shard::Shard;
pub use summary::{ErrorKinds, FleetStats, Messages, Percentiles, Sessions, Summary};
pub use template::{DEFAULT as DEFAULT_TEMPLATE, IdTemplate, TemplateError};

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::{BootSettings, Emulator, Scale};
use crate::stack::chargepoint::{self, Event};
use crate::stack::journal::{CommitStats, Committer, Durability};
use summary::CpProbe;

/// Log records each charge point of a fleet keeps (what GetDiagnostics would upload).
pub const FLEET_LOG_RECORDS: usize = 8;

/// How to run a fleet.
#[derive(Clone)]
pub struct FleetOptions {
    /// The fleet's state directory; charge point `id` keeps its state in `<state_dir>/<id>`.
    pub state_dir: PathBuf,
    /// CSMS URL; each charge point appends its id.
    pub csms_url: String,
    /// Charge points in the whole fleet (all shards).
    pub count: u64,
    pub template: IdTemplate,
    pub shard: Shard,
    /// Charge points started per second; None: all at once.
    pub ramp: Option<f64>,
    pub sessions: Option<SessionPlan>,
    /// Applied to every charge point (profile, security profile, key); the CSMS URL and the
    /// charge point id are set per charge point.
    pub settings: BootSettings,
    /// The id of the one charge point whose every event is kept for [`Fleet::take_trace`].
    pub trace: Option<String>,
    /// The journal's group commit window.
    pub commit_window: Duration,
    /// State directories prepared at once (configuration files written on first use).
    pub prepare_parallel: usize,
}

impl FleetOptions {
    pub fn new(state_dir: &Path, csms_url: &str, count: u64, template: IdTemplate) -> Self {
        FleetOptions {
            state_dir: state_dir.to_path_buf(),
            csms_url: csms_url.to_string(),
            count,
            template,
            shard: Shard::ALL,
            ramp: None,
            sessions: None,
            settings: BootSettings::default(),
            trace: None,
            commit_window: crate::stack::journal::WINDOW,
            prepare_parallel: 32,
        }
    }

    /// The numbers this process runs.
    pub fn numbers(&self) -> std::ops::RangeInclusive<u64> {
        self.shard.range(self.count)
    }

    /// Open files the fleet needs: one connection per charge point (and one more each for an
    /// in-process CSMS, when `with_csms`).
    pub fn open_files_needed(&self, with_csms: bool) -> u64 {
        let n = self.numbers().count() as u64;
        if with_csms { n * 2 } else { n }
    }
}

/// One charge point of the fleet.
pub(crate) struct Member {
    pub id: String,
    pub emulator: Emulator,
    pub probe: Arc<CpProbe>,
}

/// The fleet's charge points, filled in as the ramp starts them.
pub(crate) type Members = Arc<Vec<OnceLock<Member>>>;

/// A prepared state directory.
struct Prepared {
    id: String,
    dir: PathBuf,
    serial: String,
}

/// A running fleet.
pub struct Fleet {
    stats: Arc<FleetStats>,
    members: Members,
    ids: Vec<String>,
    committer: Committer,
    spawner: tokio::task::JoinHandle<()>,
    driver: tokio::task::JoinHandle<()>,
    sessions: mpsc::Sender<(usize, SessionSpec)>,
    trace: Option<broadcast::Receiver<Event>>,
    stop: watch::Sender<bool>,
    shard: Shard,
}

impl Fleet {
    /// Prepares every state directory of this shard (in parallel; on first use this writes
    /// each charge point's configuration), then starts the charge points, at once or along the
    /// ramp, and the sessions driver. Returns once the charge points are being started.
    pub async fn start(opts: FleetOptions) -> anyhow::Result<Fleet> {
        let numbers = opts.numbers();
        if let Some(rate) = opts.ramp
            && !(rate.is_finite() && rate > 0.0)
        {
            anyhow::bail!("ramp {rate}: must be a positive number of charge points per second");
        }
        let ids: Vec<String> = numbers.map(|n| opts.template.id(n)).collect();
        if let Some(t) = &opts.trace
            && !ids.contains(t)
        {
            anyhow::bail!(
                "--trace {t}: not a charge point of this process (ids {} to {})",
                ids.first().map(String::as_str).unwrap_or("-"),
                ids.last().map(String::as_str).unwrap_or("-")
            );
        }
        std::fs::create_dir_all(&opts.state_dir).with_context(|| {
            format!(
                "creating the fleet's state directory {}",
                opts.state_dir.display()
            )
        })?;
        let prepared = prepare_all(&opts, &ids).await?;
        let stats = Arc::new(FleetStats::new(ids.len() as u64));
        let committer = Committer::start(&opts.state_dir, opts.commit_window);
        let members: Members = Arc::new((0..ids.len()).map(|_| OnceLock::new()).collect());
        let (stop, stop_rx) = watch::channel(false);
        let base = Scale {
            event_capacity: chargepoint::EVENTS_FLEET,
            log_capacity: FLEET_LOG_RECORDS,
            log_channel: 1,
            journal: Durability::Group(committer.clone()),
            probe: None,
            durable_hardware: false,
            trusted_keys: Some(Arc::new(opts.settings.trusted_keys.clone())),
        };
        let (trace_tx, trace_rx) = tokio::sync::oneshot::channel();
        let spawner = tokio::spawn(spawn_all(
            prepared,
            members.clone(),
            stats.clone(),
            base,
            opts.ramp,
            opts.trace.clone(),
            trace_tx,
            stop_rx.clone(),
        ));
        let (sessions_tx, sessions_rx) = mpsc::channel(1024);
        let driver = tokio::spawn(sessions::drive(
            members.clone(),
            stats.clone(),
            opts.sessions.clone(),
            sessions_rx,
            stop_rx,
        ));
        let trace = match opts.trace {
            Some(_) => trace_rx.await.ok(),
            None => None,
        };
        Ok(Fleet {
            stats,
            members,
            ids,
            committer,
            spawner,
            driver,
            sessions: sessions_tx,
            trace,
            stop,
            shard: opts.shard,
        })
    }

    /// The fleet's counters now.
    pub fn summary(&self) -> Summary {
        self.stats.summary()
    }

    /// The live counters, for a view that reads them on its own schedule.
    pub fn stats(&self) -> Arc<FleetStats> {
        self.stats.clone()
    }

    /// The ids this process runs, in order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Group commits of the transaction journals so far.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.stats()
    }

    /// Every event of the traced charge point, from its start (once).
    pub fn take_trace(&mut self) -> Option<broadcast::Receiver<Event>> {
        self.trace.take()
    }

    /// Runs one session on the charge point at `index` (in [`Fleet::ids`]) unless it is in a
    /// session already.
    pub async fn start_session(&self, index: usize, spec: SessionSpec) {
        let _ = self.sessions.send((index, spec)).await;
    }

    /// The charge point at `index`, once started.
    pub fn emulator(&self, index: usize) -> Option<&Emulator> {
        self.members
            .get(index)
            .and_then(|m| m.get())
            .map(|m| &m.emulator)
    }

    /// Stops every charge point cleanly (state saved, connections closed with 1001) and the
    /// journal committer after a last commit.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stats.stopping();
        let _ = self.stop.send(true);
        let _ = self.spawner.await;
        let _ = self.driver.await;
        drop(self.sessions);
        let members = match Arc::try_unwrap(self.members) {
            Ok(m) => m,
            Err(_) => anyhow::bail!("fleet members still in use at shutdown"),
        };
        let mut stopping = tokio::task::JoinSet::new();
        let mut failures = Vec::new();
        for m in members.into_iter().filter_map(OnceLock::into_inner) {
            let probe = m.probe.clone();
            let id = m.id;
            stopping.spawn(async move {
                let result = m.emulator.shutdown().await;
                probe.gone();
                result.map_err(|e| format!("{id}: {e:#}"))
            });
        }
        while let Some(done) = stopping.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
        drop(self.committer);
        if let Some(first) = failures.first() {
            anyhow::bail!(
                "{} charge point(s) did not stop cleanly, the first: {first}",
                failures.len()
            );
        }
        Ok(())
    }
}

/// Prepares the state directories of `ids`, `opts.prepare_parallel` at a time. What this
/// writes (a first boot on empty directories: every configuration, identity and slot
/// metadata) is made durable together at the end, with two flushes of the filesystem instead
/// of two fsyncs per file.
async fn prepare_all(opts: &FleetOptions, ids: &[String]) -> anyhow::Result<Vec<Prepared>> {
    let limit = Arc::new(Semaphore::new(opts.prepare_parallel.max(1)));
    let batch = Arc::new(crate::storage::Batch::new());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let permit = limit.clone().acquire_owned().await?;
        let dir = opts.state_dir.join(id);
        let settings = BootSettings {
            csms_url: Some(opts.csms_url.clone()),
            charge_point_id: Some(id.clone()),
            ..opts.settings.clone()
        };
        let id = id.clone();
        let batch = batch.clone();
        tasks.spawn_blocking(move || {
            let _permit = permit;
            let serial =
                crate::storage::batched_blocking(batch, || Emulator::prepare(&dir, &settings))
                    .with_context(|| format!("charge point {id} ({})", dir.display()))?;
            anyhow::Ok((i, Prepared { id, dir, serial }))
        });
    }
    let mut prepared: Vec<Option<Prepared>> = (0..ids.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, p) = done.context("preparing a state directory")??;
        prepared[i] = Some(p);
    }
    let root = opts.state_dir.clone();
    tokio::task::spawn_blocking(move || batch.commit(&root))
        .await
        .context("preparing the state directories")?
        .with_context(|| {
            format!(
                "making the state directories under {} durable",
                opts.state_dir.display()
            )
        })?;
    Ok(prepared.into_iter().flatten().collect())
}

/// Starts the charge points, along the ramp or all at once.
#[allow(clippy::too_many_arguments)]
async fn spawn_all(
    prepared: Vec<Prepared>,
    members: Members,
    stats: Arc<FleetStats>,
    base: Scale,
    ramp: Option<f64>,
    trace: Option<String>,
    trace_tx: tokio::sync::oneshot::Sender<broadcast::Receiver<Event>>,
    mut stop: watch::Receiver<bool>,
) {
    let t0 = Instant::now();
    let mut trace_tx = Some(trace_tx);
    for (i, p) in prepared.into_iter().enumerate() {
        if let Some(rate) = ramp {
            let at = t0 + Duration::from_secs_f64(i as f64 / rate);
            tokio::select! {
                _ = sleep_until(at) => {}
                _ = stop.changed() => return,
            }
        } else if *stop.borrow() {
            return;
        }
        let probe = Arc::new(CpProbe::new(stats.clone()));
        let traced = trace.as_deref() == Some(p.id.as_str());
        let scale = Scale {
            probe: Some(probe.clone()),
            // Nobody listens to the others: one slot, not a preallocated ring.
            event_capacity: if traced {
                chargepoint::EVENTS_SINGLE
            } else {
                1
            },
            ..base.clone()
        };
        match Emulator::boot_prepared(&p.dir, p.serial, &scale) {
            Ok(emulator) => {
                // Frames are turned into events only for a listener: keep the receiver made
                // before the start for the traced charge point, drop it for the others.
                let from_start = emulator.handle.subscribe_from_start();
                if traced && let Some(tx) = trace_tx.take() {
                    let _ = tx.send(from_start);
                }
                stats.charge_point_started();
                let _ = members[i].set(Member {
                    id: p.id,
                    emulator,
                    probe,
                });
            }
            Err(e) => {
                tracing::error!(id = %p.id, "cannot start the charge point: {e:#}");
            }
        }
        if ramp.is_none() && i % 256 == 255 {
            // Let the charge points started so far run while the rest are started.
            tokio::task::yield_now().await;
        }
    }
}
