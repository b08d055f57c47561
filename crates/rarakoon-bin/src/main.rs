//! rarakoon-bin: the command-line entry point (run a node, `local`, client/admin commands,
//! `bench`, config checks and offline tools). See `cli.rs` for the commands and `exit.rs` for the exit
//! codes.

mod backup;
mod bench;
mod check_config;
mod cli;
mod client_cmd;
mod direct;
mod exit;
mod local;
mod logging;
mod offline;
mod run;
mod signals;
mod target;
mod tls;

use std::process::ExitCode;

/// The process allocator is mimalloc rather than glibc's malloc (ADR 0196): the store keeps
/// one allocation per entry and the replay, apply and network paths allocate per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::code(exit::FAILURE);
        }
    };
    let result: anyhow::Result<u8> = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => exit::code(code),
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            exit::code(exit::FAILURE)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        None => match (cli.config, cli.node) {
            (Some(config), Some(node)) => {
                run::run(&config, &node, cli.test_volatile_writes).await?;
                Ok(exit::OK)
            }
            _ => {
                let mut cmd = Cli::command();
                eprintln!(
                    "error: give --config FILE --node NAME to run a node, or a command\n\n{}",
                    cmd.render_usage()
                );
                Ok(exit::FAILURE)
            }
        },
        Some(Command::Local(args)) => {
            local::run(args.dir, args.nodes, args.tls, cli.log_format).await?;
            Ok(exit::OK)
        }
        Some(Command::CheckConfig { file }) => {
            check_config::check(&file)?;
            Ok(exit::OK)
        }
        Some(Command::Client(args)) => client_cmd::run_client(args).await,
        Some(Command::Admin(args)) => client_cmd::run_admin(args).await,
        Some(Command::Bench(args)) => bench::run(args, cli.log_format).await,
        Some(Command::Wal { command }) => match command {
            cli::WalCommand::Dump { dir } => offline::wal(&dir, true),
            cli::WalCommand::Verify { dir } => offline::wal(&dir, false),
        },
        Some(Command::Snapshot {
            command: cli::SnapshotCommand::Inspect { file },
        }) => offline::inspect_snapshot(&file),
        Some(Command::Restore(args)) => backup::restore(args).await,
    }
}

/// The error and its causes on one line, each cause once: many of our error messages already
/// quote their cause, which `{:#}` would print a second time.
fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
