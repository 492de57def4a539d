//! The controller driven by hand on tokio's paused clock: time moves only when every
//! task waits, to the next timer, so "before the quiet time" and "after it" are exact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep};

use super::{Control, Controller, Debounce, FILE_DEBOUNCE, Inputs};
use crate::component::FileNotices;
use crate::telemetry::Telemetry;
use crate::topology::{self, TopologyOptions};

/// A pipeline with no timer of its own worth speaking of: a generator ticking every
/// 1000 s into a blackhole whose `print_interval` the test changes to see reloads.
fn pipeline(every: u32) -> String {
    format!(
        "sources:\n  gen: {{ type: generator, rate: 0.001 }}\nsinks:\n  hole: {{ type: blackhole, inputs: [gen], print_interval: {every}s }}\n"
    )
}

struct Rig {
    file: PathBuf,
    telemetry: Arc<Telemetry>,
    control: mpsc::Sender<Control>,
    api: mpsc::Sender<super::ReloadRequest>,
    changed: mpsc::UnboundedSender<PathBuf>,
    run: tokio::task::JoinHandle<u8>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pipeline.yaml");
        std::fs::write(&file, pipeline(1)).expect("write");
        let files = vec![file.clone()];
        let telemetry = Telemetry::new();
        let options = TopologyOptions {
            data_dir: dir.path().to_path_buf(),
            ..TopologyOptions::default()
        };
        let loaded = crate::reload::load_pipeline(&files).expect("pipeline");
        let topology = topology::start(loaded, Arc::clone(&telemetry), &options)
            .await
            .expect("starts");
        let controller = Controller {
            topology,
            telemetry: Arc::clone(&telemetry),
            files,
            watcher: None,
            notices: FileNotices::default(),
            debounce: Debounce::new(FILE_DEBOUNCE),
        };
        let (control, control_rx) = mpsc::channel(4);
        let (api, api_rx) = mpsc::channel(4);
        let (changed, changed_rx) = mpsc::unbounded_channel();
        let inputs = Inputs {
            control: control_rx,
            api: api_rx,
            changed: changed_rx,
        };
        let run = tokio::spawn(controller.run(inputs, Duration::from_secs(5)));
        Self {
            file,
            telemetry,
            control,
            api,
            changed,
            run,
            _dir: dir,
        }
    }

    fn reloads(&self) -> u64 {
        let text = self.telemetry.render_prometheus();
        text.lines()
            .find_map(|l| l.strip_prefix("sluice_config_reloads_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("sluice_config_reloads_total")
    }

    fn edit(&self, every: u32) {
        std::fs::write(&self.file, pipeline(every)).expect("write");
        self.changed
            .send(self.file.clone())
            .expect("controller running");
    }

    async fn stop(self) -> u8 {
        self.control
            .send(Control::Stop("SIGTERM"))
            .await
            .expect("controller running");
        self.run.await.expect("controller task")
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_file_changes_is_one_reload_once_the_files_are_quiet() {
    let rig = Rig::start().await;
    let t0 = Instant::now();
    for every in [2, 3, 4] {
        rig.edit(every);
        sleep(Duration::from_millis(50)).await;
    }
    // The last change was at t0 + 100 ms: quiet until t0 + 300 ms.
    sleep(Duration::from_millis(149)).await;
    assert_eq!(Instant::now() - t0, Duration::from_millis(299));
    assert_eq!(rig.reloads(), 0, "still within the quiet time");
    sleep(Duration::from_millis(2)).await;
    assert_eq!(rig.reloads(), 1, "one reload for the burst");
    sleep(Duration::from_secs(5)).await;
    assert_eq!(rig.reloads(), 1, "and no more");
    assert_eq!(rig.stop().await, 0, "drained");
}

#[tokio::test(start_paused = true)]
async fn sighup_reloads_at_once_and_takes_a_pending_file_reload_with_it() {
    let rig = Rig::start().await;
    rig.edit(2);
    sleep(Duration::from_millis(10)).await;
    rig.control.send(Control::Reload).await.expect("running");
    sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.reloads(), 1, "SIGHUP does not wait for the quiet time");
    sleep(Duration::from_secs(1)).await;
    assert_eq!(rig.reloads(), 1, "the file reload would only repeat it");
    assert_eq!(rig.stop().await, 0);
}

#[tokio::test(start_paused = true)]
async fn post_reload_answers_with_what_changed_and_a_broken_file_keeps_the_pipeline() {
    let rig = Rig::start().await;
    std::fs::write(&rig.file, pipeline(7)).expect("write");
    let (reply, answer) = oneshot::channel();
    rig.api.send(reply).await.expect("running");
    let changes = answer.await.expect("answered").expect("applied");
    assert_eq!(changes["changed"], serde_json::json!(["hole"]));
    assert_eq!(rig.reloads(), 1);

    std::fs::write(&rig.file, "sinks: [").expect("write");
    let (reply, answer) = oneshot::channel();
    rig.api.send(reply).await.expect("running");
    let error = answer.await.expect("answered").expect_err("refused");
    assert!(error.contains("pipeline.yaml"), "{error}");
    assert_eq!(rig.reloads(), 1, "refused, still running the last good one");
    assert_eq!(rig.stop().await, 0);
}
