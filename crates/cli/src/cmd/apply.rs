//! `jdos apply -f FILE [--dry-run] [--wait] [--timeout 10m]`: declarative
//! apps. The file holds one or more YAML documents (`---`), each an app
//! spec; `-f -` reads stdin. The server validates each spec whole and
//! answers its diff; with `--wait` the tasks it started are followed to
//! the end with a progress bar each.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jdos_types::apply::{ApplyResult, ChangeKind, FieldChange};
use jdos_types::spec::AppSpec;
use serde::Deserialize;

use super::GlobalOpts;
use crate::output::OutputFormat;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec file (YAML, several documents allowed); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Show what would change; write nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    /// Follow every task the apply started with a progress bar until it
    /// ends; exit non-zero if one fails.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (the tasks go on).
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    pub timeout: std::time::Duration,
}

/// Reads the app specs of a file: every YAML document, in order. Empty
/// documents (a trailing `---`) are skipped.
pub fn read_specs(path: &Path) -> anyhow::Result<Vec<AppSpec>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the spec from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    parse_specs(&text).with_context(|| format!("{} is not a valid app spec", path.display()))
}

/// Parses every YAML document of `text` as an app spec.
pub fn parse_specs(text: &str) -> anyhow::Result<Vec<AppSpec>> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value =
            serde_norway::Value::deserialize(doc).with_context(|| format!("document {}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let spec: AppSpec = serde_norway::from_value(value)
            .map_err(|e| anyhow::anyhow!("document {}: {e}", i + 1))?;
        out.push(spec);
    }
    anyhow::ensure!(!out.is_empty(), "the file holds no app spec");
    Ok(out)
}

/// Applies every spec of the file, in order.
pub async fn run(a: Args, g: &GlobalOpts) -> anyhow::Result<()> {
    let specs = read_specs(&a.file)?;
    let client = super::client(g)?;
    let mut results = Vec::new();
    for spec in &specs {
        let r = client
            .apply(spec, a.dry_run)
            .await
            .with_context(|| format!("cannot apply app {}", spec.name))?;
        results.push(r);
    }
    let color = g.output == OutputFormat::Table
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    if results.len() == 1 {
        super::print(g, &results[0], || render(&results[0], color))?;
    } else {
        super::print(g, &results, || {
            results
                .iter()
                .map(|r| render(r, color))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
    }
    let ids: Vec<String> = results
        .iter()
        .flat_map(|r| r.tasks.iter().map(|t| t.id.clone()))
        .collect();
    if !a.wait || ids.is_empty() {
        return Ok(());
    }
    let done = super::follow::wait(&client, g, &ids, a.timeout).await?;
    let text = super::follow::outcome(&done);
    // The diff went to stdout already; the end of the wait goes to stderr
    // so that `-o json` output stays one document.
    if let Ok(t) = &text {
        if g.output == OutputFormat::Table {
            eprint!("{t}");
        }
    }
    text.map(|_| ())
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn show(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "(none)".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn field_lines(out: &mut String, fields: &[FieldChange], color: bool) {
    for f in fields {
        if f.old.is_some() {
            out.push_str(&paint(
                color,
                "31",
                &format!("    - {}: {}", f.field, show(&f.old)),
            ));
            out.push('\n');
        }
        if f.new.is_some() {
            out.push_str(&paint(
                color,
                "32",
                &format!("    + {}: {}", f.field, show(&f.new)),
            ));
            out.push('\n');
        }
    }
}

/// The diff as `+` (create), `~` (change) and `-` (delete) lines with the
/// old and new value of every changed field, then a one-line plan.
pub fn render(r: &ApplyResult, color: bool) -> String {
    let d = &r.diff;
    let mut out = String::new();
    let app = &d.app;
    match app.change {
        ChangeKind::Create => {
            out.push_str(&paint(color, "32", &format!("+ app {}", app.name)));
            out.push('\n');
        }
        ChangeKind::Update => {
            out.push_str(&paint(color, "33", &format!("~ app {}", app.name)));
            out.push('\n');
            field_lines(&mut out, &app.fields, color);
        }
        _ => out.push_str(&format!("  app {} unchanged\n", app.name)),
    }
    let (mut create, mut change, mut delete) = (0, 0, 0);
    for gc in &d.groups {
        let name = format!("group {} in {}", gc.key, gc.datacenter);
        match gc.change {
            ChangeKind::Create => {
                create += 1;
                let n = gc.new_replicas.unwrap_or(0);
                out.push_str(&paint(
                    color,
                    "32",
                    &format!("+ {name}: {n} replica{}", if n == 1 { "" } else { "s" }),
                ));
                out.push('\n');
            }
            ChangeKind::Update => {
                change += 1;
                out.push_str(&paint(color, "33", &format!("~ {name}")));
                out.push('\n');
                if gc.old_replicas != gc.new_replicas {
                    let fc = FieldChange {
                        field: "replicas".into(),
                        old: gc.old_replicas.map(Into::into),
                        new: gc.new_replicas.map(Into::into),
                    };
                    field_lines(&mut out, std::slice::from_ref(&fc), color);
                }
                field_lines(&mut out, &gc.fields, color);
            }
            ChangeKind::Delete => {
                delete += 1;
                out.push_str(&paint(
                    color,
                    "31",
                    &format!(
                        "- {name} ({} replicas removed)",
                        gc.old_replicas.unwrap_or(0)
                    ),
                ));
                out.push('\n');
            }
            ChangeKind::Unchanged => out.push_str(&format!("  {name} unchanged\n")),
        }
    }
    if d.is_noop() {
        out.push_str(&format!("app {}: unchanged, nothing to do\n", app.name));
        return out;
    }
    let plan = format!("groups: {create} to create, {change} to change, {delete} to delete");
    if r.dry_run {
        out.push_str(&format!("{plan} (dry run: nothing written)\n"));
    } else {
        out.push_str(&format!("{plan}\n"));
        for t in &r.tasks {
            out.push_str(&format!("task {} started: {} {}\n", t.id, t.kind, t.object));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_types::apply::diff;

    const WEB: &str = include_str!("../../../../examples/web.yaml");

    #[test]
    fn multi_document_files_are_read_in_order() {
        let two = format!(
            "{WEB}\n---\n{}\n---\n",
            WEB.replace("name: web\n", "name: web2\n")
        );
        let specs = parse_specs(&two).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "web2"]);
        let err = parse_specs("---\n").unwrap_err().to_string();
        assert!(err.contains("no app spec"), "{err}");
        let err = format!(
            "{:#}",
            parse_specs(&format!("{WEB}\n---\nkind: [")).unwrap_err()
        );
        assert!(err.contains("document 2"), "{err}");
    }

    #[test]
    fn diffs_render_as_plus_minus_lines() {
        let spec = &parse_specs(WEB).unwrap()[0];
        let (app, groups) = spec.to_records().unwrap();
        let mut old = groups.clone();
        old[0].replicas = 1;
        old[0].template.image = "jdos-busybox:old".into();
        old.pop();
        let mut gone = groups[0].clone();
        gone.name = "web-old".into();
        old.push(gone);
        let r = ApplyResult {
            dry_run: true,
            diff: diff(Some(&app), &old, &app, &groups),
            tasks: Vec::new(),
        };
        let text = render(&r, false);
        assert_eq!(
            text,
            "  app web unchanged\n\
             ~ group web/production/web-lf in langfang\n    \
             - replicas: 1\n    \
             + replicas: 2\n    \
             - template.image: jdos-busybox:old\n    \
             + template.image: jdos-busybox:latest\n\
             + group web/production/web-sq in suqian: 2 replicas\n\
             - group web/production/web-old in langfang (2 replicas removed)\n\
             groups: 1 to create, 1 to change, 1 to delete (dry run: nothing written)\n"
        );
        let same = ApplyResult {
            dry_run: false,
            diff: diff(Some(&app), &groups, &app, &groups),
            tasks: Vec::new(),
        };
        assert!(render(&same, false).ends_with("app web: unchanged, nothing to do\n"));
    }
}
