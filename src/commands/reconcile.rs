//! `nixarr-units reconcile`: compare what the engines run with what the
//! manifest wants, and close the gap (see [`crate::reconcile`]).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use comfy_table::{ContentArrangement, Table, presets};

use super::{Context, ExitStatus, Format, Output};
use crate::reconcile::pass::{self, Outcome, PassOptions, RECORD_DIR};
use crate::reconcile::{Action, Class, short_id};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop and remove orphan and forged containers (never their volumes).
    #[arg(long)]
    prune: bool,
    /// Only this stack (its prefix) [default: every stack of the manifest].
    #[arg(long, value_name = "PREFIX")]
    stack: Option<String>,
    /// Print one summary line instead of the tables, and exit 0 when the
    /// pass ran (whatever it found or did), 1 only when a read failed: what
    /// the reconcile timer's service runs, so the unit fails only then.
    #[arg(long, conflicts_with = "json")]
    summary: bool,
    /// Seconds an engine may take to list its containers.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = super::whole_seconds)]
    engine_timeout: u64,
    /// Seconds to wait for the starts and restarts.
    #[arg(long, default_value_t = 900, value_name = "SECONDS", value_parser = super::whole_seconds)]
    timeout: u64,
    /// Where each pass records what `status` shows of it.
    #[arg(long, hide = true, default_value = RECORD_DIR)]
    record_dir: PathBuf,
}

impl Args {
    pub fn run(self, ctx: &Context) -> Result<ExitStatus> {
        let outcome = pass::run(&PassOptions {
            manifest: ctx.manifest.as_deref(),
            bus_address: ctx.bus_address.as_deref(),
            stack: self.stack.as_deref(),
            dry_run: self.dry_run,
            prune: self.prune,
            engine_timeout: Duration::from_secs(self.engine_timeout),
            job_timeout: Duration::from_secs(self.timeout),
            record_dir: self.record_dir,
        })?;
        if self.summary {
            println!("{}", summary(&outcome));
            return Ok(ExitStatus::ok_if(outcome.plan.failed_reads.is_empty()));
        } else {
            ctx.printer.print(&outcome)?;
        }
        if ctx.printer.format() == Format::Json {
            // The text forms say it on stdout already.
            for read in &outcome.plan.failed_reads {
                tracing::error!("nothing done: a read failed: {read}");
            }
        }
        Ok(ExitStatus::ok_if(outcome.ok))
    }
}

impl Output for Outcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        if !self.plan.failed_reads.is_empty() {
            return writeln!(out, "{}", summary(self));
        }
        let action = |a: Action, result: &Option<String>| match (a, result) {
            (_, Some(r)) => r.clone(),
            (Action::None, None) => "-".to_owned(),
            (a, None) if self.dry_run => format!("would {}", a.name()),
            (a, None) => a.name().to_owned(),
        };
        if !self.plan.containers.is_empty() {
            let rows = self.plan.containers.iter().map(|c| {
                vec![
                    c.name.clone(),
                    short_id(&c.id).to_owned(),
                    c.service.clone().unwrap_or_else(|| "-".to_owned()),
                    c.class.to_string(),
                    action(c.action, &c.result),
                    c.detail.clone(),
                ]
            });
            let header = ["CONTAINER", "ID", "SERVICE", "CLASS", "ACTION", "DETAIL"];
            out.write_all(table(&header, rows).as_bytes())?;
            writeln!(out)?;
        }
        let rows = self.plan.units.iter().map(|u| {
            vec![
                u.unit.clone(),
                u.class.to_string(),
                action(u.action, &u.result),
                u.detail.clone(),
            ]
        });
        out.write_all(table(&["UNIT", "CLASS", "ACTION", "DETAIL"], rows).as_bytes())?;
        writeln!(out, "\n{}", summary(self))
    }
}

fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut s: String = t
        .to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

/// One line for the whole pass: what it found and what it did (or, on a
/// dry run, would do).
pub fn summary(o: &Outcome) -> String {
    let stacks = o.stacks.join(", ");
    if !o.plan.failed_reads.is_empty() {
        return format!(
            "reconcile {stacks}: nothing done: a read failed: {}",
            o.plan.failed_reads.join("; ")
        );
    }
    let classes = [
        Class::Ok,
        Class::Drift,
        Class::Missing,
        Class::Orphan,
        Class::Forged,
        Class::Foreign,
    ];
    let counts = |n: &dyn Fn(Class) -> usize| {
        classes
            .iter()
            .filter_map(|c| {
                let n = n(*c);
                (n > 0).then(|| format!("{n} {c}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let units = counts(&|c| o.plan.units.iter().filter(|u| u.class == c).count());
    let containers = counts(&|c| o.plan.count_containers(c));
    let mut line = format!(
        "reconcile {stacks}: units {}; containers {}",
        if units.is_empty() { "none" } else { &units },
        if containers.is_empty() {
            "none"
        } else {
            &containers
        }
    );
    let mut did: Vec<String> = Vec::new();
    for u in o.plan.units.iter().filter(|u| u.action != Action::None) {
        did.push(match &u.result {
            Some(r) => format!("{} {r}", u.unit),
            None => format!("would {} {}", u.action.name(), u.unit),
        });
    }
    for c in o
        .plan
        .containers
        .iter()
        .filter(|c| c.action != Action::None)
    {
        let what = format!("{} {} ({})", c.class, c.name, short_id(&c.id));
        did.push(match &c.result {
            Some(r) => format!("{what} {r}"),
            None => format!("would remove {what}"),
        });
    }
    let kept = o
        .plan
        .containers
        .iter()
        .filter(|c| matches!(c.class, Class::Orphan | Class::Forged) && c.action == Action::None)
        .count();
    if kept > 0 {
        did.push(format!(
            "{kept} orphan/forged container(s) left (--prune removes them)"
        ));
    }
    if !did.is_empty() {
        line.push_str("; ");
        line.push_str(&did.join("; "));
    }
    if o.dry_run {
        line.push_str(" (dry run: nothing changed)");
    }
    line
}
