//! A cluster shared between its readers (sources, the sim executor) and a
//! background task that steps it in real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Cluster, Scenario};

/// A cluster shared by every simulated host's source and stepped in the background.
pub type SharedCluster = Arc<Mutex<Cluster>>;

/// Steps `cluster` every `tick` of real time by `tick × speed` of simulated
/// time and applies the scenario's due events, logging each. Call it inside a
/// tokio runtime.
pub fn spawn_stepper(cluster: SharedCluster, mut scenario: Scenario, tick: Duration, speed: f64) {
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            iv.tick().await;
            let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
            c.step(tick.mul_f64(speed));
            let now = c.now();
            for a in scenario.apply_due(&mut c, now) {
                match &a.result {
                    Ok(()) => log::info!("scenario at {:?}: {}", a.at, a.action),
                    Err(e) => log::warn!("scenario at {:?}: {} failed: {e}", a.at, a.action),
                }
            }
        }
    });
}

/// A new shared cluster, stepped every 100 ms at real speed without a scenario.
pub fn stepped(cluster: Cluster) -> SharedCluster {
    let shared = Arc::new(Mutex::new(cluster));
    spawn_stepper(
        shared.clone(),
        Scenario::default(),
        Duration::from_millis(100),
        1.0,
    );
    shared
}
