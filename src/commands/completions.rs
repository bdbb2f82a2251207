//! `nixarr-units completions SHELL`: the shell completion script
//! (clap_complete) for either name of the binary.

use anyhow::Result;

use super::{Context, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
    /// Which name of the binary to complete.
    #[arg(long, value_enum, default_value_t = BinName::NixarrUnits)]
    bin: BinName,
}

/// The binary's names (one binary, several names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BinName {
    #[value(name = "nixarr-units")]
    NixarrUnits,
    #[value(name = "nixarr-migrate")]
    NixarrMigrate,
}

impl BinName {
    pub fn name(self) -> &'static str {
        match self {
            BinName::NixarrUnits => "nixarr-units",
            BinName::NixarrMigrate => "nixarr-migrate",
        }
    }

    /// The clap command of this name.
    pub fn command(self) -> clap::Command {
        match self {
            BinName::NixarrUnits => crate::cli::command(),
            BinName::NixarrMigrate => crate::cli::migrate_command(),
        }
    }
}

impl Args {
    pub fn run(self, _ctx: &Context) -> Result<ExitStatus> {
        let mut cmd = self.bin.command();
        clap_complete::generate(
            self.shell,
            &mut cmd,
            self.bin.name(),
            &mut std::io::stdout().lock(),
        );
        Ok(ExitStatus::Success)
    }
}
