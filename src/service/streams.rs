//! The streams the daemon runs, by name: started from their specs, reloaded on SIGHUP
//! (added ones start, removed ones stop, changed ones restart), stopped together.

use std::collections::HashMap;
use std::sync::Arc;

use crate::capture::{StreamHandle, StreamSpec, StreamStats, WindowSender, spawn};
use crate::config::Settings;

/// The running streams, by name, with the spec each was started from.
pub(super) struct Streams {
    pub running: HashMap<String, (StreamSpec, StreamHandle)>,
    pub settings: Settings,
    pub windows: WindowSender,
}

impl Streams {
    pub fn start(&mut self, spec: StreamSpec) {
        tracing::info!(
            "stream '{}': starting ({})",
            spec.name,
            spec.pipeline_file.display()
        );
        let handle = spawn(
            spec.clone(),
            self.settings.config.capture.clone(),
            self.settings.config.window.clone(),
            self.windows.clone(),
        );
        self.running.insert(spec.name.clone(), (spec, handle));
    }

    pub fn stats(&self) -> Vec<Arc<StreamStats>> {
        self.running
            .values()
            .map(|(_, h)| h.stats.clone())
            .collect()
    }

    /// Apply a new configuration's streams; returns the names of (added, removed) ones.
    pub fn reload(&mut self, settings: Settings) -> (Vec<String>, Vec<String>) {
        self.settings = settings;
        let wanted: HashMap<String, StreamSpec> = self
            .settings
            .streams
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let before: Vec<String> = self.running.keys().cloned().collect();
        let mut removed = Vec::new();
        for name in &before {
            let restart = match wanted.get(name) {
                Some(spec) if spec.launch == self.running[name].0.launch => continue,
                Some(_) => "changed, restarting",
                None => "removed",
            };
            tracing::info!("stream '{name}': {restart}");
            if let Some((_, handle)) = self.running.remove(name) {
                handle.stop();
            }
            if !wanted.contains_key(name) {
                removed.push(name.clone());
            }
        }
        let mut added = Vec::new();
        for (name, spec) in wanted {
            if !self.running.contains_key(&name) {
                if !before.contains(&name) {
                    added.push(name);
                }
                self.start(spec);
            }
        }
        (added, removed)
    }

    /// Stop every stream, all at once (a source can take a moment to shut).
    pub fn stop_all(&mut self) {
        std::thread::scope(|scope| {
            for (_, (_, handle)) in self.running.drain() {
                scope.spawn(move || handle.stop());
            }
        });
    }
}
