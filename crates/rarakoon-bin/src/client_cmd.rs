//! `rarakoon-bin client ...` and `rarakoon-bin admin ...`: one operation, printed plainly.
//!
//! Keys and values are printed as text when they are printable UTF-8, and escaped otherwise
//! (`\xNN`, `\n`, ...), so binary data never garbles a terminal. Exit codes: see `exit.rs`.

use bytes::Bytes;
use rarakoon_client::{Consistency, Error, NamedValue, Request, Response, Value};

use crate::cli::{AdminArgs, AdminCommand, ClientArgs, ClientCommand, RangeArgs, ReadConsistency};
use crate::direct;
use crate::exit;
use crate::target::ClusterTarget;

/// Prints bytes safely: printable UTF-8 as is, anything else escaped.
pub fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => bytes.escape_ascii().to_string(),
    }
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound(_))
}

/// Runs a client command; returns the exit code.
pub async fn run_client(args: ClientArgs) -> anyhow::Result<u8> {
    let target = ClusterTarget::resolve(&args.target)?;
    let client = target.client()?;
    let client = match args.consistency {
        ReadConsistency::Consistent => client,
        ReadConsistency::Any => client.with_consistency(Consistency::NoGuarantees),
    };
    let result: Result<u8, Error> = async {
        match args.command {
            ClientCommand::Set { key, value } => {
                client.set(key, value).await?;
                Ok(exit::OK)
            }
            ClientCommand::Get { key } => match client.get(key).await {
                Ok(v) => {
                    println!("{}", printable(&v));
                    Ok(exit::OK)
                }
                Err(e) if not_found(&e) => {
                    eprintln!("not found");
                    Ok(exit::NOT_FOUND)
                }
                Err(e) => Err(e),
            },
            ClientCommand::Delete { key } => match client.delete(key).await {
                Ok(()) => Ok(exit::OK),
                Err(e) if not_found(&e) => {
                    eprintln!("not found");
                    Ok(exit::NOT_FOUND)
                }
                Err(e) => Err(e),
            },
            ClientCommand::Exists { key } => {
                let exists = client.exists(key).await?;
                println!("{exists}");
                Ok(if exists { exit::OK } else { exit::NOT_FOUND })
            }
            ClientCommand::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                let before = client
                    .test_and_set(key, expected.map(Bytes::from), wanted.map(Bytes::from))
                    .await?;
                match before {
                    Some(v) => println!("{}", printable(&v)),
                    None => println!("(absent)"),
                }
                Ok(exit::OK)
            }
            ClientCommand::Range(r) => {
                let keys = client
                    .range(
                        r.first.clone().map(Bytes::from),
                        !r.first_exclusive,
                        r.last.clone().map(Bytes::from),
                        !r.last_exclusive,
                        r.max,
                    )
                    .await?;
                for k in keys {
                    println!("{}", printable(&k));
                }
                Ok(exit::OK)
            }
            ClientCommand::RangeEntries(r) => {
                let RangeArgs {
                    first,
                    first_exclusive,
                    last,
                    last_exclusive,
                    max,
                } = r;
                let entries = client
                    .range_entries(
                        first.map(Bytes::from),
                        !first_exclusive,
                        last.map(Bytes::from),
                        !last_exclusive,
                        max,
                    )
                    .await?;
                for (k, v) in entries {
                    println!("{}\t{}", printable(&k), printable(&v));
                }
                Ok(exit::OK)
            }
            ClientCommand::Prefix { prefix, max } => {
                for k in client.prefix_keys(prefix, max).await? {
                    println!("{}", printable(&k));
                }
                Ok(exit::OK)
            }
            ClientCommand::MultiGet { keys } => {
                match client
                    .multi_get(keys.into_iter().map(Bytes::from).collect::<Vec<_>>())
                    .await
                {
                    Ok(values) => {
                        for v in values {
                            println!("{}", printable(&v));
                        }
                        Ok(exit::OK)
                    }
                    Err(e) if not_found(&e) => {
                        eprintln!("{e}");
                        Ok(exit::NOT_FOUND)
                    }
                    Err(e) => Err(e),
                }
            }
            ClientCommand::DeletePrefix { prefix } => {
                println!("{}", client.delete_prefix(prefix).await?);
                Ok(exit::OK)
            }
            ClientCommand::WhoMaster => match client.who_master().await? {
                Some(m) => {
                    println!("{}", printable(&m));
                    Ok(exit::OK)
                }
                None => {
                    println!("(no master)");
                    Ok(exit::NOT_FOUND)
                }
            },
            ClientCommand::Statistics => {
                print_named(&client.statistics().await?, 0);
                Ok(exit::OK)
            }
            ClientCommand::Version => {
                let v = client.version().await?;
                println!("{}.{}.{}", v.major, v.minor, v.patch);
                print!("{}", printable(&v.info).replace("\\n", "\n"));
                Ok(exit::OK)
            }
            ClientCommand::KeyCount => {
                println!("{}", client.get_key_count().await?);
                Ok(exit::OK)
            }
        }
    }
    .await;
    result.map_err(Into::into)
}

fn print_named(v: &NamedValue, depth: usize) {
    let indent = "  ".repeat(depth);
    let name = printable(&v.name);
    match &v.value {
        Value::Int(i) => println!("{indent}{name}: {i}"),
        Value::Int64(i) => println!("{indent}{name}: {i}"),
        Value::Float(f) => println!("{indent}{name}: {f}"),
        Value::Str(s) => println!("{indent}{name}: {}", printable(s)),
        Value::List(children) => {
            println!("{indent}{name}:");
            for c in children {
                print_named(c, depth + 1);
            }
        }
    }
}

/// Runs an admin command against one node; returns the exit code.
pub async fn run_admin(args: AdminArgs) -> anyhow::Result<u8> {
    let target = ClusterTarget::resolve(&args.target)?;
    let (name, addr) = target.node(args.node.as_deref())?;
    let request = match args.command {
        AdminCommand::Backup { file } => {
            return crate::backup::backup(&args.target, &target, &name, addr, &file).await;
        }
        AdminCommand::Collapse { keep } => Request::CollapseTlogs {
            tlogs_to_keep: keep,
        },
        AdminCommand::DropMaster => Request::DropMaster,
        AdminCommand::CurrentState => Request::CurrentState,
        AdminCommand::OptimizeDb => Request::OptimizeDb,
        AdminCommand::DefragDb => Request::DefragDb,
        AdminCommand::FlushStore => Request::FlushStore,
        AdminCommand::CopyDbToHead { keep } => Request::CopyDbToHead {
            tlogs_to_keep: keep,
        },
        AdminCommand::Statistics => Request::Statistics,
        AdminCommand::Version => Request::Version,
        AdminCommand::WhoMaster => Request::WhoMaster,
        AdminCommand::ExpectProgressPossible => Request::ExpectProgressPossible,
    };
    let tls = target.direct_tls(&name)?;
    let reply = direct::call(&target.cluster_id, addr, &request, target.timeout, tls).await?;
    match reply {
        Ok(Response::CollapseTlogs(steps)) => {
            // One step per segment removed, then the head snapshot's index (ADR 0165).
            match steps.split_last() {
                None => println!("{name}: nothing to collapse"),
                Some((head, removed)) => println!(
                    "{name}: collapsed; {} segment(s) removed; head snapshot at index {head}",
                    removed.len()
                ),
            }
        }
        Ok(
            Response::DropMaster
            | Response::OptimizeDb
            | Response::DefragDb
            | Response::FlushStore
            | Response::CopyDbToHead,
        ) => println!("{name}: done"),
        Ok(Response::Statistics(stats)) => {
            println!("{name}:");
            print_named(&stats, 1);
        }
        Ok(Response::Version(v)) => {
            println!("{name}: {}.{}.{}", v.major, v.minor, v.patch);
            print!("{}", printable(&v.info).replace("\\n", "\n"));
        }
        Ok(Response::WhoMaster(master)) => println!(
            "{name}: {}",
            master
                .as_deref()
                .map_or_else(|| "none".to_owned(), printable)
        ),
        Ok(Response::ExpectProgressPossible(possible)) => {
            println!("{name}: {possible}");
            if !possible {
                return Ok(exit::NOT_FOUND);
            }
        }
        Ok(Response::CurrentState(s)) => println!("{name}: {}", printable(&s)),
        Ok(other) => println!("{name}: {other:?}"),
        Err(e) => {
            eprintln!("{name}: {e}");
            return Ok(exit::FAILURE);
        }
    }
    Ok(exit::OK)
}
