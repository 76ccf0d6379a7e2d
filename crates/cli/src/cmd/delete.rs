//! `jdos delete group APP/ENV/GROUP` and `jdos delete app NAME`: a task
//! that runs the pre-stop hooks, removes the containers (addresses to
//! quarantine), then the records. `--wait` follows it.

use std::time::Duration;

use anyhow::Context;

use super::GlobalOpts;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to delete.
    #[command(subcommand)]
    pub what: What,
    /// Follow the task with a progress bar until it ends; exit non-zero if
    /// it fails.
    #[arg(long, global = true)]
    pub wait: bool,
    /// Give up waiting after this long (the task goes on).
    #[arg(long, global = true, default_value = "10m", value_parser = super::parse_duration)]
    pub timeout: Duration,
}

/// Objects `delete` removes.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// A group with its containers (a group still in the app's spec comes
    /// back at the next `jdos apply`: remove it from the spec too).
    Group {
        /// `APP/ENV/GROUP`.
        key: String,
    },
    /// An app with all its groups and containers.
    App {
        /// App name.
        name: String,
    },
}

/// Starts the deletion; with `--wait` follows it.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let client = super::client(g)?;
    let (task, what) = match &a.what {
        What::Group { key } => {
            let k = super::get::parse_group_key(key)?;
            let t = client
                .delete_group(&k)
                .await
                .with_context(|| format!("cannot delete group {k}"))?;
            (t, format!("group {k}"))
        }
        What::App { name } => {
            let t = client
                .delete_app_task(name)
                .await
                .with_context(|| format!("cannot delete app {name}"))?;
            (t, format!("app {name}"))
        }
    };
    super::scale::finish(&client, g, task, &what, a.wait, a.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    #[test]
    fn groups_and_apps_parse_with_wait_on_either_side() {
        let c =
            Cli::try_parse_from(["delete", "group", "web/production/web-lf", "--wait"]).unwrap();
        assert!(c.a.wait);
        assert!(matches!(c.a.what, What::Group { ref key } if key == "web/production/web-lf"));
        let c = Cli::try_parse_from(["delete", "--wait", "--timeout", "2m", "app", "web"]).unwrap();
        assert!(c.a.wait);
        assert_eq!(c.a.timeout, Duration::from_secs(120));
        assert!(matches!(c.a.what, What::App { ref name } if name == "web"));
        assert!(Cli::try_parse_from(["delete", "host", "h1"]).is_err());
    }
}
