//! Lifecycle spans (`fork`, `restart`, `reload`, `replace`, `shutdown`, `drain`) of real
//! clusters, captured in the test process (the primary) by a small recording layer.
//!
//! Each test installs its recorder with `set_default` (thread-local) and runs on a
//! current-thread runtime, so the cluster's actors run on the test's thread and report to it,
//! and tests running in parallel do not see each other's spans.

mod common;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use common::*;
use corral::ClusterEvent;
use nix::sys::signal::Signal;
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const TARGET: &str = "corral::lifecycle";

/// One recorded span.
#[derive(Debug, Clone)]
struct SpanRec {
    /// Index in the recording (span ids are reused by the registry once closed; these are not).
    key: usize,
    name: &'static str,
    fields: HashMap<String, String>,
    /// Key of the parent span, if it is a recorded one.
    parent: Option<usize>,
    closed: bool,
}

impl SpanRec {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn is(&self, name: &str, field: &str, value: impl ToString) -> bool {
        self.name == name && self.field(field) == Some(value.to_string().as_str())
    }
}

/// The recording, shared by the layer and the test.
#[derive(Clone, Default)]
struct Recording {
    spans: Arc<Mutex<Vec<SpanRec>>>,
    changed: Arc<Notify>,
}

impl Recording {
    fn lock(&self) -> MutexGuard<'_, Vec<SpanRec>> {
        self.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> Vec<SpanRec> {
        self.lock().clone()
    }

    /// Waits (bounded) until `check` returns `Some` on the recording; returns its value.
    async fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Spans) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a change after it wakes us.
            changed.as_mut().enable();
            let spans = Spans(self.snapshot());
            if let Some(found) = check(&spans) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {what}; spans: {:#?}", spans.0);
            }
        }
    }
}

/// A snapshot of the recording, with tree queries.
struct Spans(Vec<SpanRec>);

impl Spans {
    fn named(&self, name: &str) -> Vec<&SpanRec> {
        self.0.iter().filter(|s| s.name == name).collect()
    }

    fn children(&self, parent: &SpanRec, name: &str) -> Vec<&SpanRec> {
        self.0.iter().filter(|s| s.parent == Some(parent.key) && s.name == name).collect()
    }
}

/// Records every span with the lifecycle target: name, fields, parent, closed.
struct Recorder(Recording);

/// The recording's key of a span, kept in the span's registry extensions.
struct Key(usize);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        // The registry resolves explicit and contextual parents alike.
        let parent = span.parent().and_then(|p| p.extensions().get::<Key>().map(|k| k.0));
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let key = {
            let mut spans = self.0.lock();
            let key = spans.len();
            spans.push(SpanRec { key, name: attrs.metadata().name(), fields, parent, closed: false });
            key
        };
        span.extensions_mut().insert(Key(key));
        self.0.changed.notify_waiters();
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(key) = ctx.span(id).and_then(|s| s.extensions().get::<Key>().map(|k| k.0)) else { return };
        if let Some(rec) = self.0.lock().get_mut(key) {
            values.record(&mut Fields(&mut rec.fields));
        }
        self.0.changed.notify_waiters();
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(key) = ctx.span(&id).and_then(|s| s.extensions().get::<Key>().map(|k| k.0)) else { return };
        if let Some(rec) = self.0.lock().get_mut(key) {
            rec.closed = true;
        }
        self.0.changed.notify_waiters();
    }
}

/// A recording and the subscriber that fills it (to install with `set_default`).
fn recorder() -> (Recording, Dispatch) {
    let recording = Recording::default();
    let subscriber = tracing_subscriber::registry().with(Recorder(recording.clone()));
    (recording, Dispatch::new(subscriber))
}

/// Waits for the `shutdown` span to close with one closed `drain` child per pid in `pids`.
async fn assert_shutdown_drains(recording: &Recording, pids: &[u32]) {
    recording
        .wait_for("a closed shutdown span with a closed drain per worker", |spans| {
            let shutdown = spans.named("shutdown");
            let [shutdown] = shutdown.as_slice() else { return None };
            let drains = spans.children(shutdown, "drain");
            let all_drained =
                pids.iter().all(|pid| drains.iter().any(|d| d.closed && d.is("drain", "process.pid", pid)));
            (shutdown.closed && drains.len() == pids.len() && all_drained).then_some(())
        })
        .await;
    let spans = Spans(recording.snapshot());
    let shutdown = spans.named("shutdown")[0];
    assert_eq!(shutdown.field("otel.status_code"), None, "a clean stop: {shutdown:?}");
    for drain in spans.children(shutdown, "drain") {
        assert_eq!(drain.field("corral.killed"), None, "drained in time: {drain:?}");
        assert!(drain.field("corral.exit").is_some(), "the exit is recorded: {drain:?}");
    }
}

#[tokio::test]
async fn fork_restart_and_shutdown_spans() {
    let (recording, dispatch) = recorder();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let (cluster, mut events) = spawn(config(2)).await;
    let pids = events.all_ready(2).await;

    // (1) One closed `fork` per worker, with its pid.
    let forks = recording
        .wait_for("two closed fork spans", |spans| {
            let forks = spans.named("fork");
            (forks.len() == 2 && forks.iter().all(|f| f.closed)).then(|| forks.into_iter().cloned().collect::<Vec<_>>())
        })
        .await;
    for (slot, pid) in pids.iter().enumerate() {
        let fork = forks.iter().find(|f| f.is("fork", "corral.slot", slot)).expect("a fork span per slot");
        assert_eq!(fork.field("process.pid"), Some(pid.to_string().as_str()), "{fork:?}");
        assert_eq!(fork.field("corral.generation"), Some("1"), "{fork:?}");
        assert_eq!(fork.field("corral.role"), Some("current"), "{fork:?}");
        assert_eq!(fork.field("otel.status_code"), None, "{fork:?}");
        assert_eq!(fork.parent, None, "a first start is a root span: {fork:?}");
    }

    // (2) SIGKILL slot 1: a `restart` span whose child `fork` (generation 2) closes once online.
    kill(pids[1], Signal::SIGKILL);
    let ready = events.wait_for("slot 1 ready again", |e| matches!(e, ClusterEvent::Ready { slot: 1, .. })).await;
    let ClusterEvent::Ready { pid: new_pid, .. } = ready else { unreachable!() };
    let (restart, fork) = recording
        .wait_for("a closed restart span with a closed fork child", |spans| {
            let restarts = spans.named("restart");
            let [restart] = restarts.as_slice() else { return None };
            let forks = spans.children(restart, "fork");
            let [fork] = forks.as_slice() else { return None };
            (restart.closed && fork.closed).then(|| ((*restart).clone(), (*fork).clone()))
        })
        .await;
    assert_eq!(restart.field("corral.slot"), Some("1"), "{restart:?}");
    assert_eq!(restart.field("corral.exit"), Some("killed by signal 9 (SIGKILL)"), "{restart:?}");
    assert!(restart.field("corral.restart.attempt").is_some(), "{restart:?}");
    assert!(restart.field("corral.restart.delay_ms").is_some(), "{restart:?}");
    assert_eq!(restart.field("otel.status_code"), None, "{restart:?}");
    assert_eq!(fork.field("corral.slot"), Some("1"), "{fork:?}");
    assert_eq!(fork.field("corral.generation"), Some("2"), "{fork:?}");
    assert_eq!(fork.field("process.pid"), Some(new_pid.to_string().as_str()), "{fork:?}");
    assert_eq!(fork.field("otel.status_code"), None, "{fork:?}");

    // (4) Stop: one `shutdown` span with a closed `drain` per worker.
    cluster.stop().await.expect("clean stop");
    assert_shutdown_drains(&recording, &[pids[0], new_pid]).await;
}

#[tokio::test]
async fn reload_spans_have_a_replace_per_slot_each_with_its_fork_and_drain() {
    let (recording, dispatch) = recorder();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let (cluster, mut events) = spawn(config(2)).await;
    events.all_ready(2).await;

    // (3) One `reload` span; a `replace` child per slot, each with the new process's `fork`
    // and the old process's `drain`; all closed once the old processes have exited.
    let report = cluster.reload().await.expect("reload");
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.replaced.len(), 2);
    let spans = recording
        .wait_for("a closed reload span with closed replace, fork and drain spans", |spans| {
            let reloads = spans.named("reload");
            let [reload] = reloads.as_slice() else { return None };
            let replaces = spans.children(reload, "replace");
            let done = reload.closed
                && replaces.len() == 2
                && replaces.iter().all(|r| {
                    r.closed
                        && spans.children(r, "fork").iter().all(|f| f.closed)
                        && spans.children(r, "drain").iter().all(|d| d.closed)
                });
            done.then(|| Spans(spans.0.clone()))
        })
        .await;
    let reload = spans.named("reload")[0];
    assert_eq!(reload.field("corral.slots"), Some("2"), "{reload:?}");
    assert_eq!(reload.field("corral.replaced"), Some("2"), "{reload:?}");
    assert_eq!(reload.field("otel.status_code"), None, "{reload:?}");
    for replaced in &report.replaced {
        let replace = spans
            .children(reload, "replace")
            .into_iter()
            .find(|r| r.is("replace", "corral.slot", replaced.slot))
            .unwrap_or_else(|| panic!("a replace span for slot {}", replaced.slot));
        assert_eq!(replace.field("corral.replace.reason"), Some("reload"), "{replace:?}");
        assert_eq!(replace.field("corral.replace.old_pid"), Some(replaced.old_pid.to_string().as_str()));
        assert_eq!(replace.field("corral.replace.new_pid"), Some(replaced.new_pid.to_string().as_str()));
        assert_eq!(replace.field("otel.status_code"), None, "{replace:?}");
        let forks = spans.children(replace, "fork");
        let [fork] = forks.as_slice() else { panic!("one fork under {replace:?}: {forks:?}") };
        assert_eq!(fork.field("process.pid"), Some(replaced.new_pid.to_string().as_str()), "{fork:?}");
        assert_eq!(fork.field("corral.generation"), Some("2"), "{fork:?}");
        assert_eq!(fork.field("corral.role"), Some("candidate"), "{fork:?}");
        let drains = spans.children(replace, "drain");
        let [drain] = drains.as_slice() else { panic!("one drain under {replace:?}: {drains:?}") };
        assert_eq!(drain.field("process.pid"), Some(replaced.old_pid.to_string().as_str()), "{drain:?}");
    }
    events.wait_for("reloaded", |e| matches!(e, ClusterEvent::Reloaded { replaced: 2, error: None })).await;

    cluster.stop().await.expect("clean stop");
    let new: Vec<u32> = report.replaced.iter().map(|r| r.new_pid).collect();
    assert_shutdown_drains(&recording, &new).await;
}

#[tokio::test]
async fn an_aborted_reload_marks_its_spans_as_errors() {
    let (recording, dispatch) = recorder();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let flag = std::env::temp_dir().join(format!("corral-spans-bad-deploy-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let (cluster, mut events) = spawn(config(1).env_var("TESTBED_CRASH_IF_EXISTS", &flag)).await;
    let pids = events.all_ready(1).await;
    std::fs::write(&flag, b"bad deploy").expect("flag");
    let report = cluster.reload().await.expect("reload answers");
    std::fs::remove_file(&flag).expect("unflag");
    let error = report.error.expect("the reload fails");

    let (reload, replace) = recording
        .wait_for("a closed, failed reload span with its failed replace", |spans| {
            let reloads = spans.named("reload");
            let [reload] = reloads.as_slice() else { return None };
            let replaces = spans.children(reload, "replace");
            let [replace] = replaces.as_slice() else { return None };
            (reload.closed && replace.closed).then(|| ((*reload).clone(), (*replace).clone()))
        })
        .await;
    assert_eq!(reload.field("otel.status_code"), Some("ERROR"), "{reload:?}");
    assert_eq!(reload.field("error.message"), Some(error.to_string().as_str()), "{reload:?}");
    assert_eq!(reload.field("corral.replaced"), Some("0"), "{reload:?}");
    assert_eq!(replace.field("otel.status_code"), Some("ERROR"), "{replace:?}");
    assert!(replace.field("error.message").is_some_and(|m| m.contains("exited with code 1")), "{replace:?}");
    assert_eq!(replace.field("corral.replace.old_pid"), Some(pids[0].to_string().as_str()), "{replace:?}");

    cluster.stop().await.expect("clean stop");
    assert_shutdown_drains(&recording, &pids).await;
}
