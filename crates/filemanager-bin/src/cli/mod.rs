//! The command line: `filemanager serve` and the operator commands (`put`, `get`, `ls`, `rm`,
//! `stat`, `url`, `rekey`), all over the library with the same configuration as the service.
//!
//! Output is for scripts as much as for people: results on stdout (`--json` for machine
//! readable ones), progress bars only on a terminal, and any error as one line on stderr with a
//! non-zero exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (storage, configuration, I/O) |
//! | 2 | bad usage or invalid input (location, option) |
//! | 3 | no such file |

mod files;
mod progress;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::CommonArgs;

/// The `filemanager` command.
#[derive(Debug, Parser)]
#[command(
    name = "filemanager",
    version,
    about = "Store files of multi-domain applications: HTTP service and operator CLI"
)]
pub struct Cli {
    /// Settings shared by all commands.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(serve::ServeArgs),
    /// Upload a local file (or `-` for stdin) to a location such as blog/app/posts/1.jpg.
    Put {
        /// Local file, or `-` for standard input.
        source: PathBuf,
        /// Where to store it: {domain}/app/{filename} or {domain}/user/{user_id}/{filename}.
        location: String,
        /// MIME type (default: guessed from the file name, else application/octet-stream).
        #[arg(long)]
        content_type: Option<String>,
        /// User metadata, name=value (repeatable).
        #[arg(long = "meta", value_name = "NAME=VALUE")]
        meta: Vec<String>,
        /// Store compressed.
        #[arg(long)]
        compress: bool,
        /// Store without encryption.
        #[arg(long)]
        no_encrypt: bool,
        /// Do not keep the content in the cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Download a file to a local path (default: its name in the current directory; `-` for
    /// stdout). The local file appears only once complete.
    Get {
        /// The location.
        location: String,
        /// Local file or directory, or `-` for standard output.
        dest: Option<PathBuf>,
    },
    /// List the files of {domain}/app or {domain}/user/{user_id}.
    Ls {
        /// The scope.
        scope: String,
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Files per page (1-1000).
        #[arg(long, default_value_t = 1000)]
        max_keys: usize,
        /// Continue after this cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow cursors until the end.
        #[arg(long)]
        all: bool,
    },
    /// Delete a file.
    Rm {
        /// The location.
        location: String,
    },
    /// Describe a file.
    Stat {
        /// The location.
        location: String,
    },
    /// Make a presigned URL (download by default; --upload for an upload URL).
    Url {
        /// The location.
        location: String,
        /// An upload (PUT) URL instead of a download (GET) one.
        #[arg(long)]
        upload: bool,
        /// Seconds of validity (1-604800).
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// Upload URLs: the content type the upload must carry.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
        /// Upload URLs: most bytes allowed.
        #[arg(long)]
        max_size: Option<u64>,
        /// Upload URLs: store compressed.
        #[arg(long)]
        compress: bool,
        /// Upload URLs: store without encryption.
        #[arg(long)]
        no_encrypt: bool,
    },
    /// Re-encrypt files sealed under old keys (STORAGE_ENCRYPTION_KEYS_OLD) with the current key.
    Rekey {
        /// Only storage keys starting with this (e.g. `blog/`); default all.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.common, args).await,
        other => files::run(&cli.common, cli.json, other).await,
    }
}

/// Prints `err` as one line and picks the exit status.
fn fail(err: &anyhow::Error) -> ExitCode {
    let one_line = format!("{err:#}").replace('\n', " ");
    eprintln!("filemanager: error: {one_line}");
    let code = match err.downcast_ref::<filemanager::Error>() {
        Some(
            filemanager::Error::InvalidLocation { .. } | filemanager::Error::InvalidInput { .. },
        ) => 2,
        Some(filemanager::Error::FileNotFound { .. }) => 3,
        _ => 1,
    };
    ExitCode::from(code)
}
