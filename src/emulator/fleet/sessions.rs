//! The sessions driver: seedable random charging sessions across the fleet. Sessions start as a
//! Poisson process at `rate` per second; each picks a random idle, booted charge point, plugs
//! the EV in, sets a random demand, presents a card, charges for a random time and unplugs.
//! One task drives every session from one timer queue, so a session costs no task of its own.
//! The same seed gives the same sequence of draws (which charge point, card, demand, length);
//! which draws find their charge point idle depends on the run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::Members;
use super::summary::FleetStats;
use crate::stack::hardware::HwEvent;

/// Random sessions across the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPlan {
    /// Sessions started per second across the fleet (this process's shard).
    pub rate: f64,
    pub seed: u64,
    /// The EV charges for a time drawn uniformly from this range.
    pub length: (Duration, Duration),
    /// The EV asks for a current (A) drawn uniformly from this range.
    pub demand: (f64, f64),
}

impl SessionPlan {
    /// `rate` sessions per second with `seed`: 30 s to 5 min of charging at 6 to 32 A.
    pub fn new(rate: f64, seed: u64) -> SessionPlan {
        SessionPlan {
            rate,
            seed,
            length: (Duration::from_secs(30), Duration::from_secs(300)),
            demand: (6.0, 32.0),
        }
    }
}

/// One session on one charge point.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub id_tag: String,
    pub amps: f64,
    /// From the card until the EV is unplugged.
    pub length: Duration,
}

/// A step of a session, due at a time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Card(String),
    Unplug,
}

/// The card is presented this long after the plug.
const CARD_AFTER: Duration = Duration::from_millis(500);
/// Draws for an idle charge point before a session start is skipped.
const PICKS: usize = 8;

pub(super) async fn drive(
    members: Members,
    stats: Arc<FleetStats>,
    plan: Option<SessionPlan>,
    mut requests: mpsc::Receiver<(usize, SessionSpec)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(plan.as_ref().map_or(0, |p| p.seed));
    let mut busy = vec![false; members.len()];
    let mut due: BinaryHeap<Reverse<(Instant, usize, Step)>> = BinaryHeap::new();
    let interval = |rng: &mut StdRng, rate: f64| {
        // Exponential inter-arrival times: a Poisson process of `rate` per second.
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        Duration::from_secs_f64((-u.ln() / rate).min(3600.0))
    };
    let mut next_arrival = plan
        .as_ref()
        .filter(|p| p.rate > 0.0)
        .map(|p| Instant::now() + interval(&mut rng, p.rate));
    let mut requests_open = true;
    loop {
        let next_step = due.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            _ = stop.changed() => return,
            req = requests.recv(), if requests_open => match req {
                Some((i, spec)) => {
                    if i < busy.len() && !busy[i] {
                        begin(&members, &stats, &mut busy, &mut due, i, spec).await;
                    }
                }
                // Nothing more will be asked; keep driving what runs.
                None => requests_open = false,
            },
            _ = sleep_opt(next_step) => {
                while let Some(Reverse((t, i, step))) = due.peek().cloned() {
                    if t > Instant::now() {
                        break;
                    }
                    due.pop();
                    let Some(m) = members.get(i).and_then(|m| m.get()) else { continue };
                    match step {
                        Step::Card(tag) => m.emulator.act(HwEvent::Card { id_tag: tag }).await,
                        Step::Unplug => {
                            m.emulator.act(HwEvent::Unplug).await;
                            busy[i] = false;
                            stats.session_done();
                        }
                    }
                }
            }
            _ = sleep_opt(next_arrival) => {
                let Some(p) = &plan else { continue };
                next_arrival = Some(Instant::now() + interval(&mut rng, p.rate));
                let spec = SessionSpec {
                    id_tag: format!("{:08X}", rng.random::<u32>()),
                    amps: rng.random_range(p.demand.0..=p.demand.1).round(),
                    length: if p.length.1 > p.length.0 {
                        rng.random_range(p.length.0..=p.length.1)
                    } else {
                        p.length.0
                    },
                };
                for _ in 0..PICKS {
                    let i = rng.random_range(0..members.len().max(1));
                    let ready = members
                        .get(i)
                        .and_then(|m| m.get())
                        .is_some_and(|m| m.probe.is_booted());
                    if ready && !busy[i] {
                        begin(&members, &stats, &mut busy, &mut due, i, spec).await;
                        break;
                    }
                }
            }
        }
    }
}

async fn begin(
    members: &Members,
    stats: &FleetStats,
    busy: &mut [bool],
    due: &mut BinaryHeap<Reverse<(Instant, usize, Step)>>,
    i: usize,
    spec: SessionSpec,
) {
    let Some(m) = members.get(i).and_then(|m| m.get()) else {
        return;
    };
    busy[i] = true;
    stats.session_started();
    m.emulator.act(HwEvent::EvDemand { amps: spec.amps }).await;
    m.emulator.act(HwEvent::Plug).await;
    let now = Instant::now();
    due.push(Reverse((now + CARD_AFTER, i, Step::Card(spec.id_tag))));
    due.push(Reverse((now + CARD_AFTER + spec.length, i, Step::Unplug)));
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}
