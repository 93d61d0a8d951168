//! Participant entrypoints: a callback run for every remote participant of the job's room,
//! those already present when the agent connects and those joining later (the reference's
//! `JobContext.add_participant_entrypoint`).
//!
//! [`ParticipantEntrypoints`] is the bookkeeping, generic over the participant handle so it is
//! tested without WebRTC; with the `room` feature, [`JobContext::add_participant_entrypoint`]
//! registers callbacks taking a `livekit` `RemoteParticipant`, and the room connection feeds
//! `ParticipantConnected` / `ParticipantDisconnected` events in.
//!
//! Each registered entrypoint runs once per participant session (keyed by the participant's
//! sid, which changes when a participant leaves and rejoins), on its own task, in parallel with
//! the others. An entrypoint registered after participants are already known runs for them at
//! once (the reference only runs it for later joins in that case). Errors and panics are logged;
//! the tasks are aborted when the job shuts down.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;

use super::job::JobContext;
use crate::room_logic::{ParticipantKind, DEFAULT_PARTICIPANT_KINDS};

/// A participant entrypoint: called with the job and the participant.
pub type ParticipantEntrypointFn<P> =
    Arc<dyn Fn(JobContext, P) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Who a participant is, as far as entrypoint dispatch is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRef {
    /// The participant identity.
    pub identity: String,
    /// The participant sid (one per connection: a participant who rejoins gets a new one).
    pub sid: String,
    /// The participant kind.
    pub kind: ParticipantKind,
}

struct Entry<P> {
    name: String,
    kinds: Vec<ParticipantKind>,
    run: ParticipantEntrypointFn<P>,
}

struct State<P> {
    entries: Vec<Entry<P>>,
    /// Participants present now, by identity.
    present: HashMap<String, (ParticipantRef, P)>,
    /// (participant sid, entry index) pairs already started.
    started: HashSet<(String, usize)>,
}

/// The registered participant entrypoints of a job and the participants they ran for.
pub struct ParticipantEntrypoints<P> {
    state: Mutex<State<P>>,
}

impl<P> std::fmt::Debug for ParticipantEntrypoints<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("ParticipantEntrypoints")
            .field(
                "entries",
                &state.entries.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .field("present", &state.present.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<P> Default for ParticipantEntrypoints<P> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                entries: Vec::new(),
                present: HashMap::new(),
                started: HashSet::new(),
            }),
        }
    }
}

impl<P: Clone + Send + 'static> ParticipantEntrypoints<P> {
    /// No entrypoints, no participants.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `entrypoint` (named `name` in logs) for participants of one of `kinds` (empty:
    /// [`DEFAULT_PARTICIPANT_KINDS`]) and runs it at once for matching participants already
    /// present.
    pub fn add<F, Fut>(
        &self,
        ctx: &JobContext,
        name: impl Into<String>,
        kinds: Vec<ParticipantKind>,
        entrypoint: F,
    ) where
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let kinds = if kinds.is_empty() {
            DEFAULT_PARTICIPANT_KINDS.to_vec()
        } else {
            kinds
        };
        let run: ParticipantEntrypointFn<P> = Arc::new(move |ctx, p| entrypoint(ctx, p).boxed());
        let to_start = {
            let mut state = self.state.lock();
            let index = state.entries.len();
            state.entries.push(Entry {
                name: name.into(),
                kinds,
                run,
            });
            let present: Vec<(ParticipantRef, P)> = state.present.values().cloned().collect();
            present
                .into_iter()
                .filter_map(|(who, p)| Self::claim(&mut state, index, &who).map(|s| (s, who, p)))
                .collect::<Vec<_>>()
        };
        for (start, who, p) in to_start {
            start.spawn(ctx, who, p);
        }
    }

    /// A remote participant is present (found when connecting, or joined). Starts every
    /// matching entrypoint that has not run for this participant session yet.
    pub fn participant_connected(&self, ctx: &JobContext, who: ParticipantRef, participant: P) {
        let to_start = {
            let mut state = self.state.lock();
            state
                .present
                .insert(who.identity.clone(), (who.clone(), participant.clone()));
            (0..state.entries.len())
                .filter_map(|i| Self::claim(&mut state, i, &who))
                .collect::<Vec<_>>()
        };
        for start in to_start {
            start.spawn(ctx, who.clone(), participant.clone());
        }
    }

    /// A remote participant left; its running entrypoints go on until they return.
    pub fn participant_disconnected(&self, identity: &str) {
        self.state.lock().present.remove(identity);
    }

    /// Identities of the participants present.
    pub fn present(&self) -> Vec<String> {
        self.state.lock().present.keys().cloned().collect()
    }

    /// Marks entry `index` as started for `who` if it matches and has not run yet.
    fn claim(state: &mut State<P>, index: usize, who: &ParticipantRef) -> Option<Start<P>> {
        let entry = state.entries.get(index)?;
        if !entry.kinds.contains(&who.kind) {
            return None;
        }
        let (name, run) = (entry.name.clone(), entry.run.clone());
        if !state.started.insert((who.sid.clone(), index)) {
            return None;
        }
        Some(Start { name, run })
    }
}

struct Start<P> {
    name: String,
    run: ParticipantEntrypointFn<P>,
}

impl<P: Send + 'static> Start<P> {
    fn spawn(self, ctx: &JobContext, who: ParticipantRef, participant: P) {
        let fut = (self.run)(ctx.clone(), participant);
        let job = ctx.clone();
        let name = self.name;
        tokio::spawn(async move {
            // Own task so that a panic is contained and reported like an error.
            let mut task = tokio::spawn(fut);
            tokio::select! {
                res = &mut task => match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(
                        entrypoint = name, participant = who.identity, error = %format!("{e:#}"),
                        "participant entrypoint failed"
                    ),
                    Err(e) => tracing::error!(
                        entrypoint = name, participant = who.identity, error = %e,
                        "participant entrypoint panicked"
                    ),
                },
                _ = job.wait_for_shutdown() => task.abort(),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::{JobContextParams, JobProcess};
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn who(identity: &str, sid: &str, kind: ParticipantKind) -> ParticipantRef {
        ParticipantRef {
            identity: identity.into(),
            sid: sid.into(),
            kind,
        }
    }

    fn ctx() -> JobContext {
        JobContext::new(JobContextParams::default(), JobProcess::new())
    }

    /// Registers an entrypoint that reports `(tag, participant)` on `tx`.
    fn add(
        eps: &ParticipantEntrypoints<String>,
        ctx: &JobContext,
        tag: &'static str,
        kinds: Vec<ParticipantKind>,
        tx: &mpsc::UnboundedSender<(&'static str, String)>,
    ) {
        let tx = tx.clone();
        eps.add(ctx, tag, kinds, move |_ctx, p: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((tag, p));
                Ok(())
            }
        });
    }

    fn drain(
        rx: &mut mpsc::UnboundedReceiver<(&'static str, String)>,
    ) -> Vec<(&'static str, String)> {
        let mut got = Vec::new();
        while let Ok(x) = rx.try_recv() {
            got.push(x);
        }
        got.sort();
        got
    }

    #[tokio::test(start_paused = true)]
    async fn runs_for_present_and_joining_participants_once_each() {
        let ctx = ctx();
        let eps = ParticipantEntrypoints::<String>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();

        eps.participant_connected(
            &ctx,
            who("alice", "PA_1", ParticipantKind::Standard),
            "alice".into(),
        );
        add(&eps, &ctx, "greet", vec![], &tx);
        add(&eps, &ctx, "sip-only", vec![ParticipantKind::Sip], &tx);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(drain(&mut rx), vec![("greet", "alice".to_string())]);

        // The same session seen again (initial scan racing the join event): nothing new.
        eps.participant_connected(
            &ctx,
            who("alice", "PA_1", ParticipantKind::Standard),
            "alice".into(),
        );
        eps.participant_connected(
            &ctx,
            who("phone", "PA_2", ParticipantKind::Sip),
            "phone".into(),
        );
        eps.participant_connected(
            &ctx,
            who("bot", "PA_3", ParticipantKind::Agent),
            "bot".into(),
        );
        eps.participant_connected(
            &ctx,
            who("egress", "PA_4", ParticipantKind::Egress),
            "egress".into(),
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            drain(&mut rx),
            vec![
                ("greet", "phone".to_string()),
                ("sip-only", "phone".to_string())
            ]
        );

        // Alice leaves and rejoins: a new session, the entrypoint runs again.
        eps.participant_disconnected("alice");
        assert!(!eps.present().contains(&"alice".to_string()));
        eps.participant_connected(
            &ctx,
            who("alice", "PA_5", ParticipantKind::Standard),
            "alice".into(),
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(drain(&mut rx), vec![("greet", "alice".to_string())]);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_contained_and_shutdown_aborts_running_entrypoints() {
        let ctx = ctx();
        let eps = ParticipantEntrypoints::<String>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        eps.add(&ctx, "panics", vec![], |_ctx, _p: String| async move {
            panic!("boom");
        });
        eps.add(&ctx, "fails", vec![], |_ctx, _p: String| async move {
            Err(anyhow::anyhow!("nope"))
        });
        let done = tx.clone();
        eps.add(&ctx, "long", vec![], move |_ctx, p: String| {
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                let _ = done.send(("long", p));
                Ok(())
            }
        });
        add(&eps, &ctx, "ok", vec![], &tx);
        eps.participant_connected(
            &ctx,
            who("alice", "PA_1", ParticipantKind::Standard),
            "alice".into(),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(drain(&mut rx), vec![("ok", "alice".to_string())]);

        ctx.shutdown("test over");
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert!(drain(&mut rx).is_empty(), "the long entrypoint was aborted");
    }
}
