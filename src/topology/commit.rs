//! The commit phase of a reload: what the build phase made is swapped in. Removed
//! components are unwired and drain, every output is rewired before a new task runs,
//! replaced tasks hand over, and whatever has not finished by the drain deadline is
//! aborted (its unsettled events are reported to their sources as failed).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::build::Staged;
use super::plan::{Plan, Wanted};
use super::run::supervise;
use super::{Changes, REPLACED, RUNNING, Topology};
use crate::component::{ComponentKind, Output};
use crate::config::Pipeline;
use crate::telemetry::ComponentState;

impl Topology {
    /// Installs `staged` and makes `new` the running pipeline.
    pub(super) async fn commit(
        &mut self,
        new: Pipeline,
        wanted: &[Wanted],
        plan: Plan,
        staged: Staged,
    ) -> Changes {
        let Staged {
            shells: added_shells,
            gained,
            fresh_inputs,
            built,
        } = staged;
        let mut changes = Changes {
            added: plan.added,
            changed: plan.changed,
            removed: plan.removed,
            aborted: Vec::new(),
        };
        let mut waiting: Vec<(String, CancellationToken, Option<tokio::task::AbortHandle>)> =
            Vec::new();
        // Removed sources stop only once every output is rewired: a source that ends
        // closes its outputs, and if those held the last senders into a sink's buffer
        // (a source renamed, its sink kept), the buffer would close before the new
        // source took a sender from it.
        let mut stop_removed = Vec::new();
        for id in &changes.removed {
            if let Some(shell) = self.shells.remove(id)
                && let Some(task) = shell.task
            {
                if shell.kind == ComponentKind::Source {
                    stop_removed.push(task.stop);
                }
                // Transforms and sinks are unwired below; they drain what they hold
                // and end when their buffer closes.
                waiting.push((id.clone(), task.done, task.kill));
            }
        }
        for ((id, name), output) in gained {
            if let Some(shell) = self.shells.get_mut(&id) {
                shell.outputs.insert(name, output);
            }
        }
        for (id, shell) in &mut self.shells {
            let default = (shell.kind != ComponentKind::Sink).then_some(None);
            let names: HashSet<Option<String>> = default
                .into_iter()
                .chain(new.named_outputs(id).into_iter().map(Some))
                .collect();
            shell.outputs.retain(|name, _| names.contains(name));
        }
        for (id, shell) in added_shells {
            self.shells.insert(id, shell);
        }
        for (id, input) in fresh_inputs {
            if let Some(shell) = self.shells.get_mut(&id) {
                shell.input = Some(input);
            }
        }
        for w in wanted {
            if let Some(shell) = self.shells.get_mut(&w.id) {
                shell.fingerprint = w.fingerprint;
                if shell.buffer != w.buffer {
                    if let Some(input) = &shell.input {
                        input.probe.reconfigure(&w.buffer);
                    }
                    shell.buffer = w.buffer;
                }
            }
        }
        // Outputs of components getting a new task are open again (a previous task
        // may have ended for good and closed them).
        for b in &built {
            if let Some(shell) = self.shells.get(&b.id) {
                for output in shell.outputs.values() {
                    output.reopen();
                }
            }
        }
        // Wire every output before any new task runs: a source that emits at once must
        // find its consumers in place.
        self.pipeline = new;
        self.rewire();
        for stop in stop_removed {
            stop.cancel();
        }
        for shell in self.shells.values_mut() {
            if let Some(input) = &mut shell.input {
                input.bootstrap = None;
            }
        }
        for mut b in built {
            let Some(shell) = self.shells.get_mut(&b.id) else {
                continue;
            };
            if let Some(old) = shell.task.take() {
                // If it already ended for good, there is nothing to hand over.
                if old
                    .state
                    .compare_exchange(RUNNING, REPLACED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    old.stop.cancel();
                    waiting.push((b.id.clone(), old.done, old.kill));
                }
            }
            let outputs: Vec<Arc<Output>> = shell.outputs.values().cloned().collect();
            let input = shell.input.as_ref().map(|i| Arc::clone(&i.slot));
            let metrics = Arc::clone(&shell.metrics);
            metrics.set_state(ComponentState::Running);
            let generation = b.control.generation;
            self.live.insert((b.id.clone(), generation));
            // The component runs as its own task, so nothing wraps its polls; the
            // supervisor only wakes when it ends.
            let inner = tokio::spawn(b.task);
            b.control.kill = Some(inner.abort_handle());
            self.tasks.spawn(supervise(
                b.id.clone(),
                generation,
                metrics,
                inner,
                outputs,
                input,
                b.control.done.clone(),
                Arc::clone(&b.control.state),
            ));
            shell.task = Some(b.control);
        }
        let keep = self.listen_addresses(&self.pipeline);
        self.listeners.retain(keep.iter().map(String::as_str));

        // Let replaced components hand over and removed ones drain, within the deadline.
        let deadline = tokio::time::Instant::now() + self.options.drain_timeout;
        for (id, done, kill) in waiting {
            if tokio::time::timeout_at(deadline, done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(component_id = %id, timeout = ?self.options.drain_timeout, "component did not finish in time; aborting it");
                if let Some(kill) = kill {
                    kill.abort();
                }
                done.cancelled().await;
                changes.aborted.push(id);
            }
        }
        for id in &changes.removed {
            if !self.shells.contains_key(id) {
                self.telemetry.remove(id);
            }
        }
        self.reap();
        changes
    }
}
