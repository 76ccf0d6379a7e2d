//! Which apps a caller may see: a developer sees its department's only.
//! Groups and containers carry no department, so their lists look it up
//! through the app.

use std::collections::HashMap;

use jdos_store::Store;
use jdos_types::{keys, App, Role};

use crate::auth::Caller;
use crate::error::HttpError;
use crate::kv;

/// The apps a developer may see, or `None` for admin and ops (everything).
#[derive(Debug, Clone, Default)]
pub struct AppScope {
    visible: Option<HashMap<String, bool>>,
}

impl AppScope {
    /// The caller's scope; for a developer, every app of its department
    /// (one pass over the apps, which are few next to their containers).
    pub async fn of(store: &dyn Store, caller: &Caller) -> Result<AppScope, HttpError> {
        if caller.role != Role::Developer {
            return Ok(AppScope { visible: None });
        }
        let apps: Vec<App> = kv::list_all(store, keys::APPS).await?;
        Ok(AppScope {
            visible: Some(
                apps.into_iter()
                    .map(|a| {
                        let ok = caller.in_scope(&a.department);
                        (a.name, ok)
                    })
                    .collect(),
            ),
        })
    }

    /// True when objects of `app` are visible (an app deleted meanwhile
    /// has no department: hidden from developers).
    pub fn allows(&self, app: &str) -> bool {
        match &self.visible {
            None => true,
            Some(m) => m.get(app).copied().unwrap_or(false),
        }
    }
}
