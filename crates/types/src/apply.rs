//! What applying an [`AppSpec`](crate::spec::AppSpec) changes: the diff
//! between the stored app and groups and the spec's records, computed as a
//! pure function so that a dry run and the real apply agree exactly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{App, Group, GroupKey, Task};

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It does not exist yet and will be created.
    Create,
    /// It exists and some fields change.
    Update,
    /// It exists and is not in the spec: it will be deleted.
    Delete,
    /// It exists and nothing changes.
    Unchanged,
}

/// One changed field, by dotted path (`template.resources.cpu_millis`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path.
    pub field: String,
    /// Value before (absent when the field is new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// Value after (absent when the field is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// What happens to the app record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppChange {
    /// App name.
    pub name: String,
    /// Create, update or unchanged.
    pub change: ChangeKind,
    /// Changed fields (update only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// What happens to one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupChange {
    /// The group.
    pub key: GroupKey,
    /// Its datacenter.
    pub datacenter: String,
    /// Create, update, delete or unchanged.
    pub change: ChangeKind,
    /// Replicas before (absent for a new group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_replicas: Option<u32>,
    /// Replicas after (absent for a deleted group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_replicas: Option<u32>,
    /// Changed fields other than replicas (template, placement, autoscaling).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

impl GroupChange {
    /// True when the container template changes (a rolling update).
    pub fn template_changed(&self) -> bool {
        self.fields.iter().any(|f| f.field.starts_with("template"))
    }

    /// True when the replica count changes.
    pub fn replicas_changed(&self) -> bool {
        self.change == ChangeKind::Update && self.old_replicas != self.new_replicas
    }
}

/// The whole diff of one apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyDiff {
    /// The app.
    pub app: AppChange,
    /// Its groups, in the spec's order, then the deleted ones.
    pub groups: Vec<GroupChange>,
}

impl ApplyDiff {
    /// True when applying changes nothing.
    pub fn is_noop(&self) -> bool {
        self.app.change == ChangeKind::Unchanged
            && self
                .groups
                .iter()
                .all(|g| g.change == ChangeKind::Unchanged)
    }
}

/// Answer of `POST /api/v1/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// True when nothing was written (`?dry_run=true`).
    pub dry_run: bool,
    /// What changes (or changed).
    pub diff: ApplyDiff,
    /// Tasks started to converge the groups (none on a dry run or a no-op).
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// The changes from `old` to `new` as dotted leaf paths. Objects are
/// compared key by key; anything else (numbers, strings, lists) as a whole.
pub fn field_changes(prefix: &str, old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(prefix, Some(old), Some(new), &mut out);
    out
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, a.get(k), b.get(k), out);
            }
        }
        (a, b) if a == b => {}
        // A null and an absent field mean the same (skipped `None`s).
        (None | Some(Value::Null), None | Some(Value::Null)) => {}
        (a, b) => out.push(FieldChange {
            field: path.to_string(),
            old: a.filter(|v| !v.is_null()).cloned(),
            new: b.filter(|v| !v.is_null()).cloned(),
        }),
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The diff of applying `app` + `groups` over what is stored (`cur_app`,
/// `cur_groups`: the app's stored groups). Groups are matched by key; stored
/// groups that the spec leaves out are deleted. Creation times are ignored.
pub fn diff(cur_app: Option<&App>, cur_groups: &[Group], app: &App, groups: &[Group]) -> ApplyDiff {
    let app_change = match cur_app {
        None => AppChange {
            name: app.name.clone(),
            change: ChangeKind::Create,
            fields: Vec::new(),
        },
        Some(cur) => {
            let mut a = cur.clone();
            a.created_at_ms = app.created_at_ms;
            let fields = field_changes("", &to_value(&a), &to_value(app));
            AppChange {
                name: app.name.clone(),
                change: if fields.is_empty() {
                    ChangeKind::Unchanged
                } else {
                    ChangeKind::Update
                },
                fields,
            }
        }
    };
    let mut out = Vec::new();
    for g in groups {
        let key = g.key();
        match cur_groups.iter().find(|c| c.key() == key) {
            None => out.push(GroupChange {
                key,
                datacenter: g.datacenter.clone(),
                change: ChangeKind::Create,
                old_replicas: None,
                new_replicas: Some(g.replicas),
                fields: Vec::new(),
            }),
            Some(c) => {
                let mut cv = to_value(c);
                let mut nv = to_value(g);
                for v in [&mut cv, &mut nv] {
                    if let Value::Object(m) = v {
                        m.remove("replicas");
                    }
                }
                let fields = field_changes("", &cv, &nv);
                let change = if fields.is_empty() && c.replicas == g.replicas {
                    ChangeKind::Unchanged
                } else {
                    ChangeKind::Update
                };
                out.push(GroupChange {
                    key,
                    datacenter: g.datacenter.clone(),
                    change,
                    old_replicas: Some(c.replicas),
                    new_replicas: Some(g.replicas),
                    fields,
                })
            }
        }
    }
    for c in cur_groups {
        if !groups.iter().any(|g| g.key() == c.key()) {
            out.push(GroupChange {
                key: c.key(),
                datacenter: c.datacenter.clone(),
                change: ChangeKind::Delete,
                old_replicas: Some(c.replicas),
                new_replicas: None,
                fields: Vec::new(),
            });
        }
    }
    ApplyDiff {
        app: app_change,
        groups: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::ContainerTemplate;
    use crate::Resources;

    fn group(name: &str, replicas: u32) -> Group {
        Group {
            app: "web".into(),
            env: "production".into(),
            name: name.into(),
            datacenter: "langfang".into(),
            replicas,
            template: ContainerTemplate {
                image: "jdos-busybox:latest".into(),
                resources: Resources::new(250, 64 << 20),
                ..Default::default()
            },
            placement: Default::default(),
            autoscaling: None,
        }
    }

    fn app() -> App {
        App {
            name: "web".into(),
            owner: "alice".into(),
            department: "retail".into(),
            business_level: Default::default(),
            description: String::new(),
            labels: Default::default(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_new_app_creates_everything() {
        let d = diff(None, &[], &app(), &[group("a", 2)]);
        assert_eq!(d.app.change, ChangeKind::Create);
        assert_eq!(d.groups[0].change, ChangeKind::Create);
        assert_eq!(d.groups[0].new_replicas, Some(2));
        assert!(!d.is_noop());
    }

    #[test]
    fn the_same_records_are_a_noop() {
        let mut stored = app();
        stored.created_at_ms = 1234;
        let d = diff(Some(&stored), &[group("a", 2)], &app(), &[group("a", 2)]);
        assert!(d.is_noop(), "{d:?}");
    }

    #[test]
    fn changes_are_reported_field_by_field() {
        let mut next = app();
        next.owner = "bob".into();
        let mut a = group("a", 5);
        a.template.image = "jdos-busybox:v2".into();
        a.template.env.insert("X".into(), "1".into());
        let d = diff(
            Some(&app()),
            &[group("a", 2), group("old", 1)],
            &next,
            &[a, group("new", 1)],
        );
        assert_eq!(d.app.change, ChangeKind::Update);
        assert_eq!(d.app.fields[0].field, "owner");
        let g = &d.groups[0];
        assert_eq!(g.change, ChangeKind::Update);
        assert_eq!((g.old_replicas, g.new_replicas), (Some(2), Some(5)));
        let fields: Vec<&str> = g.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["template.env", "template.image"]);
        assert!(g.template_changed() && g.replicas_changed());
        assert_eq!(d.groups[1].change, ChangeKind::Create);
        assert_eq!(d.groups[2].change, ChangeKind::Delete);
        assert_eq!(d.groups[2].key.group, "old");
    }
}
