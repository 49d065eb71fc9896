//! `citybrain forms`: report templates of one form instead of many (一表通). `check` reads a
//! directory of templates as `up` reads `DATA/forms/` and prints the burden they put on a
//! community: fields, shared questions, what the data answers and the minutes by hand.

use std::path::PathBuf;

use anyhow::Result;
use citybrain_cockpits::forms;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a directory of report templates (every .toml in it) as `up` loads
    /// `DATA/forms/`; without DIR, the shipped templates. Prints the burden before and after.
    Check {
        /// The directory; docs/forms.md says how to write a template.
        dir: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Check { dir } => check(dir),
    }
}

fn check(dir: Option<PathBuf>) -> Result<()> {
    let templates = match &dir {
        Some(dir) if !dir.is_dir() => anyhow::bail!(
            "{}: not a directory (give the folder that holds the template files)",
            dir.display()
        ),
        Some(dir) => citybrain_server::scenes::forms::load(dir),
        None => Ok(forms::shipped()),
    }
    .map_err(|problems| {
        anyhow::anyhow!(
            "the form templates do not load:\n  {}\nfix each, then check again",
            problems.join("\n  ")
        )
    })?;
    for t in &templates {
        let data = t.fields.iter().filter(|f| f.sql.is_some()).count();
        println!(
            "{:<22} {:<18} {} fields, {} from data",
            t.id,
            t.department,
            t.fields.len(),
            data
        );
    }
    let b = forms::burden(&templates);
    println!(
        "{} templates check: {} fields asking {} questions ({} of them repeat a question another field asks), {} answered by data, {} by a person; {:.1} % of the fields filled from data; {:.0} → {:.0} minutes by hand per community and month ({} minutes a field, the model of docs/forms.md)",
        b.templates,
        b.fields,
        b.concepts,
        b.duplicate_fields,
        b.concepts_from_data,
        b.concepts_by_hand,
        b.fields_from_data_share * 100.0,
        b.minutes_before,
        b.minutes_after,
        b.minutes_per_field
    );
    Ok(())
}
