//! The `host` source: dom0's own health (sysinfo) and the warning-failure
//! signals of the host: maintenance flag file, UPS on battery (NUT `upsc`
//! output or a file), EDAC memory errors, temperature and a pending shutdown.
//!
//! Only what node_exporter does not already give, plus what the alerts need.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sysinfo::{Components, MemoryRefreshKind, RefreshKind, System};

use super::{BoxFuture, Source, SourceError};
use crate::config::WarningsConfig;
use crate::snapshot::{Collection, Dom0Health, WarningKind};

/// Reads dom0 health and the warning signals.
pub struct HostSource {
    cfg: WarningsConfig,
    sys: Mutex<(Option<System>, Option<Components>)>,
}

impl HostSource {
    /// A source for the given warning configuration.
    pub fn new(cfg: WarningsConfig) -> Self {
        // Without hwmon sensors there is simply no temperature to report.
        let comps = Components::new_with_refreshed_list().ok();
        HostSource {
            cfg,
            sys: Mutex::new((None, comps)),
        }
    }

    fn health(&self) -> Result<Dom0Health, HostError> {
        let mut g = self.sys.lock().unwrap_or_else(|e| e.into_inner());
        let (sys, comps) = &mut *g;
        if sys.is_none() {
            let kind = RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram());
            *sys = Some(
                System::new_with_specifics(kind).map_err(|e| HostError::Memory(e.to_string()))?,
            );
        }
        let sys = sys.as_mut().ok_or(HostError::NoSystem)?;
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let l = System::load_average().map_err(|e| HostError::Load(e.to_string()))?;
        let temperatures = match comps {
            Some(c) => {
                c.refresh(true);
                c.iter()
                    .filter_map(|c| Some((c.label().to_string(), f64::from(c.temperature()?))))
                    .filter(|(_, t)| t.is_finite())
                    .collect()
            }
            None => vec![],
        };
        Ok(Dom0Health {
            load: [l.one, l.five, l.fifteen],
            memory_available_bytes: sys.available_memory(),
            memory_total_bytes: sys.total_memory(),
            temperatures,
        })
    }

    async fn ups_on_battery(&self) -> Result<bool, HostError> {
        let text = if let Some(f) = self.cfg.ups_status_file.as_ref() {
            match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(error) => {
                    return Err(HostError::UpsFile {
                        path: f.clone(),
                        error,
                    });
                }
            }
        } else if let Some((prog, args)) = self.cfg.ups_command.split_first() {
            let out = tokio::time::timeout(
                Duration::from_secs(3),
                tokio::process::Command::new(prog)
                    .args(args)
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .map_err(|_| HostError::UpsTimeout(prog.clone()))?
            .map_err(|error| HostError::UpsRun {
                prog: prog.clone(),
                error,
            })?;
            if !out.status.success() {
                return Err(HostError::UpsFailed {
                    prog: prog.clone(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            return Ok(false);
        };
        Ok(ups_status_on_battery(&text))
    }
}

/// True when NUT status flags say the UPS runs on battery (`OB`) or is low (`LB`).
/// Accepts full `upsc` output (`ups.status: OB DISCHRG`) or a bare status line.
pub fn ups_status_on_battery(text: &str) -> bool {
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix("ups.status:"))
        .unwrap_or_else(|| text.lines().next().unwrap_or(""));
    status.split_whitespace().any(|f| f == "OB" || f == "LB")
}

/// Sums EDAC `ce_count`/`ue_count` over memory controllers; `None` without EDAC.
pub fn edac_counts(dir: &Path) -> Option<(u64, u64)> {
    let entries = std::fs::read_dir(dir).ok()?;
    let read = |p: PathBuf| -> u64 {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut found = false;
    let (mut ce, mut ue) = (0, 0);
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("mc"))
        {
            found = true;
            ce += read(p.join("ce_count"));
            ue += read(p.join("ue_count"));
        }
    }
    found.then_some((ce, ue))
}

/// Why dom0's health or the UPS could not be read (one line, cause included:
/// it becomes the source's error).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read dom0 memory: {0}")]
    Memory(String),
    #[error("no system")]
    NoSystem,
    #[error("cannot read load average: {0}")]
    Load(String),
    #[error("cannot read UPS status file {}: {error}", path.display())]
    UpsFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("UPS command {0} timed out")]
    UpsTimeout(String),
    #[error("cannot run UPS command {prog}: {error}")]
    UpsRun { prog: String, error: std::io::Error },
    #[error("UPS command {prog} failed: {stderr}")]
    UpsFailed { prog: String, stderr: String },
}

impl Source for HostSource {
    fn name(&self) -> &'static str {
        "host"
    }

    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let health = self.health();
            let hot = health.as_ref().is_ok_and(|h| {
                h.temperatures
                    .iter()
                    .any(|(_, t)| *t >= *self.cfg.temperature_celsius)
            });
            out.dom0 = health.as_ref().ok().cloned();
            out.warn(WarningKind::Temperature, hot);
            out.warn(WarningKind::Maintenance, self.cfg.maintenance_file.exists());
            out.warn(
                WarningKind::Shutdown,
                self.cfg.shutdown_files.iter().any(|f| f.exists()),
            );
            let edac = edac_counts(&self.cfg.edac_dir);
            out.hardware_errors = edac;
            out.warn(
                WarningKind::HardwareErrors,
                edac.is_some_and(|(ce, ue)| ue > 0 || ce > *self.cfg.corrected_errors_threshold),
            );
            // The UPS is read last: its failure marks the source down but the
            // other signals above are already in.
            let ups = self.ups_on_battery().await;
            out.warn(WarningKind::UpsOnBattery, *ups.as_ref().unwrap_or(&false));
            health
                .map(|_| ())
                .and(ups.map(|_| ()))
                .map_err(|e| SourceError(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::V;

    #[test]
    fn nut_status_flags() {
        assert!(ups_status_on_battery(
            "battery.charge: 90\nups.status: OB DISCHRG\n"
        ));
        assert!(!ups_status_on_battery("ups.status: OL CHRG\n"));
        assert!(ups_status_on_battery("OL LB"));
        assert!(!ups_status_on_battery(""));
    }

    #[tokio::test]
    async fn warnings_come_from_files_edac_and_ups() {
        let dir = std::env::temp_dir().join(format!("xentinel-host-{}", std::process::id()));
        let mc = dir.join("edac/mc0");
        std::fs::create_dir_all(&mc).unwrap();
        std::fs::write(mc.join("ce_count"), "3\n").unwrap();
        std::fs::write(mc.join("ue_count"), "0\n").unwrap();
        std::fs::write(dir.join("ups"), "ups.status: OB\n").unwrap();
        std::fs::write(dir.join("maint"), "").unwrap();
        let cfg = WarningsConfig {
            maintenance_file: V(dir.join("maint")),
            ups_status_file: V(Some(dir.join("ups"))),
            edac_dir: V(dir.join("edac")),
            corrected_errors_threshold: V(2),
            shutdown_files: V(vec![dir.join("absent")]),
            temperature_celsius: V(1000.0),
            ..Default::default()
        };
        let src = HostSource::new(cfg);
        let mut c = Collection::default();
        src.collect(&mut c).await.unwrap();
        let on = |k| c.warnings.get(&k).copied();
        assert_eq!(on(WarningKind::Maintenance), Some(true));
        assert_eq!(on(WarningKind::UpsOnBattery), Some(true));
        assert_eq!(on(WarningKind::HardwareErrors), Some(true));
        assert_eq!(on(WarningKind::Shutdown), Some(false));
        assert_eq!(on(WarningKind::Temperature), Some(false));
        assert_eq!(c.hardware_errors, Some((3, 0)));
        assert!(c.dom0.unwrap().memory_total_bytes > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
