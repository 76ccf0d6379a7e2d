//! A worker's in-memory view of the task queue and the app locks, fed by
//! the store watches, indexed so that picking the next runnable task costs
//! O(log n) whatever the queue length.

use std::collections::{BTreeSet, HashMap, HashSet};

use jdos_store::Revision;

use crate::QueueEntry;

/// Which watch a blocked app waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchOn {
    Queue,
    Locks,
}

/// Queue entries per app, the locked apps and the apps this worker is busy
/// with; `ready` holds each runnable app's head task, in id order.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    queue: HashMap<String, QueueEntry>,
    apps: HashMap<String, BTreeSet<String>>,
    locked: HashSet<String>,
    busy: HashSet<String>,
    /// Apps not to be tried until a watch has caught up with a revision (a
    /// claim found the lock taken or the task finished before we saw it).
    blocked: HashMap<String, (Revision, WatchOn, std::time::Instant)>,
    ready: BTreeSet<(String, String)>,
    ready_of: HashMap<String, String>,
    queue_rev: Revision,
    lock_rev: Revision,
    kinds: HashSet<String>,
}

impl Mirror {
    /// A mirror that only offers tasks of these kinds.
    pub(crate) fn new(kinds: impl IntoIterator<Item = String>) -> Self {
        Mirror {
            kinds: kinds.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Replaces the queue with a fresh listing at `rev`.
    pub(crate) fn reset_queue(&mut self, entries: Vec<(String, QueueEntry)>, rev: Revision) {
        let apps: Vec<String> = self.apps.keys().cloned().collect();
        self.queue.clear();
        self.apps.clear();
        for (id, e) in entries {
            self.apps
                .entry(e.app.clone())
                .or_default()
                .insert(id.clone());
            self.queue.insert(id, e);
        }
        self.queue_rev = rev;
        let mut touched: HashSet<String> = apps.into_iter().collect();
        touched.extend(self.apps.keys().cloned());
        self.blocked.retain(|_, b| b.1 != WatchOn::Queue);
        for app in touched {
            self.refresh(&app);
        }
    }

    /// Replaces the locked apps with a fresh listing at `rev`.
    pub(crate) fn reset_locks(&mut self, apps: Vec<String>, rev: Revision) {
        let mut touched: HashSet<String> = self.locked.drain().collect();
        self.locked.extend(apps.iter().cloned());
        touched.extend(apps);
        self.lock_rev = rev;
        self.blocked.retain(|_, b| b.1 != WatchOn::Locks);
        for app in touched {
            self.refresh(&app);
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.queue.contains_key(id)
    }

    /// Unblocks apps blocked since before `cutoff`: a safety net should the
    /// awaited revision never show on the watch (a hand-edited store).
    pub(crate) fn expire_blocked(&mut self, cutoff: std::time::Instant) {
        let stale: Vec<String> = self
            .blocked
            .iter()
            .filter(|(_, b)| b.2 < cutoff)
            .map(|(app, _)| app.clone())
            .collect();
        for app in stale {
            self.blocked.remove(&app);
            self.refresh(&app);
        }
    }

    /// A task was queued or its entry changed.
    pub(crate) fn queue_put(&mut self, id: String, entry: QueueEntry) {
        let app = entry.app.clone();
        if let Some(old) = self.queue.insert(id.clone(), entry) {
            if old.app != app {
                self.remove_from_app(&old.app, &id);
            }
        }
        self.apps.entry(app.clone()).or_default().insert(id);
        self.refresh(&app);
    }

    /// A task left the queue (finished or cancelled); returns its entry.
    pub(crate) fn queue_delete(&mut self, id: &str) -> Option<QueueEntry> {
        let e = self.queue.remove(id)?;
        self.remove_from_app(&e.app, id);
        self.refresh(&e.app);
        Some(e)
    }

    fn remove_from_app(&mut self, app: &str, id: &str) {
        if let Some(ids) = self.apps.get_mut(app) {
            ids.remove(id);
            if ids.is_empty() {
                self.apps.remove(app);
            }
        }
    }

    pub(crate) fn lock_put(&mut self, app: &str) {
        self.locked.insert(app.to_string());
        self.refresh(app);
    }

    pub(crate) fn lock_delete(&mut self, app: &str) {
        self.locked.remove(app);
        self.refresh(app);
    }

    /// The queue watch has delivered everything up to `rev`.
    pub(crate) fn queue_caught_up(&mut self, rev: Revision) {
        self.queue_rev = self.queue_rev.max(rev);
        self.unblock();
    }

    /// The lock watch has delivered everything up to `rev`.
    pub(crate) fn locks_caught_up(&mut self, rev: Revision) {
        self.lock_rev = self.lock_rev.max(rev);
        self.unblock();
    }

    fn unblock(&mut self) {
        if self.blocked.is_empty() {
            return;
        }
        let (q, l) = (self.queue_rev, self.lock_rev);
        let free: Vec<String> = self
            .blocked
            .iter()
            .filter(|(_, (rev, on, _))| match on {
                WatchOn::Queue => q >= *rev,
                WatchOn::Locks => l >= *rev,
            })
            .map(|(app, _)| app.clone())
            .collect();
        for app in free {
            self.blocked.remove(&app);
            self.refresh(&app);
        }
    }

    /// Takes the oldest runnable task and marks its app busy.
    pub(crate) fn take_ready(&mut self) -> Option<(String, String)> {
        let (id, app) = self.ready.pop_first()?;
        self.ready_of.remove(&app);
        self.busy.insert(app.clone());
        Some((id, app))
    }

    /// This worker is done with its run for `app` (finished, fenced, or the
    /// claim found the app blocked until a watch reaches a revision).
    pub(crate) fn release(&mut self, app: &str, blocked: Option<(Revision, WatchOn)>) {
        self.busy.remove(app);
        if let Some((rev, on)) = blocked {
            let seen = match on {
                WatchOn::Queue => self.queue_rev,
                WatchOn::Locks => self.lock_rev,
            };
            if rev > seen {
                self.blocked
                    .insert(app.to_string(), (rev, on, std::time::Instant::now()));
            }
        }
        self.refresh(app);
    }

    /// Recomputes whether `app`'s head task is runnable here.
    fn refresh(&mut self, app: &str) {
        if let Some(id) = self.ready_of.remove(app) {
            self.ready.remove(&(id, app.to_string()));
        }
        if self.locked.contains(app) || self.busy.contains(app) || self.blocked.contains_key(app) {
            return;
        }
        let Some(head) = self.apps.get(app).and_then(|ids| ids.first()) else {
            return;
        };
        let runnable = self
            .queue
            .get(head)
            .is_some_and(|e| self.kinds.contains(&e.kind));
        if runnable {
            self.ready.insert((head.clone(), app.to_string()));
            self.ready_of.insert(app.to_string(), head.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(app: &str) -> QueueEntry {
        QueueEntry {
            app: app.into(),
            kind: "k".into(),
            cancel: false,
        }
    }

    fn mirror() -> Mirror {
        Mirror::new(["k".to_string()])
    }

    #[test]
    fn offers_each_apps_head_in_id_order() {
        let mut m = mirror();
        m.queue_put("3".into(), entry("a"));
        m.queue_put("1".into(), entry("b"));
        m.queue_put("2".into(), entry("a"));
        assert_eq!(m.take_ready(), Some(("1".into(), "b".into())));
        assert_eq!(m.take_ready(), Some(("2".into(), "a".into())));
        assert_eq!(m.take_ready(), None, "a and b are busy");
        m.queue_delete("2");
        m.release("a", None);
        assert_eq!(m.take_ready(), Some(("3".into(), "a".into())));
    }

    #[test]
    fn locked_apps_and_unknown_kinds_are_not_offered() {
        let mut m = mirror();
        m.lock_put("a");
        m.queue_put("1".into(), entry("a"));
        m.queue_put(
            "2".into(),
            QueueEntry {
                kind: "other".into(),
                ..entry("b")
            },
        );
        assert_eq!(m.take_ready(), None);
        m.lock_delete("a");
        assert_eq!(m.take_ready(), Some(("1".into(), "a".into())));
    }

    #[test]
    fn a_blocked_app_waits_for_its_watch_to_catch_up() {
        let mut m = mirror();
        m.queue_put("1".into(), entry("a"));
        assert!(m.take_ready().is_some());
        m.release("a", Some((10, WatchOn::Locks)));
        assert_eq!(m.take_ready(), None);
        m.queue_caught_up(20);
        assert_eq!(m.take_ready(), None, "the other watch does not count");
        m.locks_caught_up(10);
        assert_eq!(m.take_ready(), Some(("1".into(), "a".into())));
        // A revision the watch already passed does not block.
        m.release("a", Some((5, WatchOn::Locks)));
        assert!(m.take_ready().is_some());
        // A revision that never shows is given up after a while.
        m.release("a", Some((99, WatchOn::Queue)));
        assert_eq!(m.take_ready(), None);
        m.expire_blocked(std::time::Instant::now() + std::time::Duration::from_secs(1));
        assert!(m.take_ready().is_some());
    }

    #[test]
    fn reset_rebuilds_the_ready_set() {
        let mut m = mirror();
        m.queue_put("1".into(), entry("a"));
        m.reset_queue(vec![("5".into(), entry("c"))], 7);
        m.reset_locks(vec!["c".into()], 7);
        assert_eq!(m.take_ready(), None);
        m.reset_locks(vec![], 8);
        assert_eq!(m.take_ready(), Some(("5".into(), "c".into())));
        assert!(!m.contains("1"));
    }
}
