//! `kubectl hitl`: a kubectl plugin for people at the gates. Put it on PATH as `kubectl-hitl`.
//!
//!   kubectl hitl pending [-A] [-o json|yaml|name]        gates waiting for a decision
//!   kubectl hitl describe GATE [-o json|yaml|name]       what a gate asks, who decides, by when
//!   kubectl hitl approve GATE [--input k=v]... [--comment TEXT]
//!   kubectl hitl reject GATE [--comment TEXT]
//!   kubectl hitl logs GATE [--step NAME] [-f] [--tail N]  the logs a gate shows as evidence
//!   kubectl hitl history [-A] [--workflow W] [--approver U] [--since 30d] [-o table|json|yaml|csv] [--verify]
//!                                                       the decision archive: who decided what
//!   kubectl hitl ui [--port N] [--no-open]              the approval pages in a browser
//!   kubectl hitl completion bash|zsh|fish
//!
//! GATE is an Approval name or WORKFLOW/STEP. Connection flags as kubectl's: `--kubeconfig`,
//! `--context`, `--cluster`, `--user`, `-n`. Deciding sends the same merge patch a person would
//! type; the API server checks the input and who decides, and records the decider. Errors are one
//! line (`error: ...`) and exit 1.

mod cli;
mod complete;
mod connect;
mod decide;
mod describe;
mod errors;
mod history;
mod history_output;
mod logs;
mod output;
mod target;
mod ui;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use hitl_api::{Approval, ApprovalPhase, Workflow};
use kube::api::ListParams;
use kube::{Api, Client};

use cli::{Args, Command, Format};
use output::Shape;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(complete::COBRA) {
        print!("{}", complete::cobra(&argv[2..]).await);
        return ExitCode::SUCCESS;
    }
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", errors::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Command::Completion { shell } = args.command {
        complete::script(shell, &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Ui(ui_args) = args.command {
        return ui::run(&args.connect, ui_args).await;
    }
    // The archive's 503 (its database away) is an answer for the person, not a reason to retry.
    let retry = !matches!(args.command, Command::History(_));
    let target = connect::connect_with(&args.connect, retry).await?;
    let (client, ns) = (target.client, target.namespace);
    let done = match args.command {
        Command::Pending { all_namespaces, output } => pending(client, &ns, all_namespaces, output).await,
        Command::Describe { gate, output } => describe(client, &ns, &gate, output).await,
        Command::Approve { gate, inputs, comment, output } => {
            decide(client, &ns, &gate, decide::patch("Approve", &inputs, comment.as_deref())?, output).await
        }
        Command::Reject { gate, comment, output } => {
            decide(client, &ns, &gate, decide::patch("Reject", &[], comment.as_deref())?, output).await
        }
        Command::Logs { gate, step, follow, tail } => {
            let a = get(&client, &ns, &gate).await?;
            logs::print(&client, &ns, &a, logs::Wanted { step: step.as_deref(), follow, tail }).await
        }
        Command::History(history) => history::run(&client, &ns, &history).await,
        Command::Completion { .. } | Command::Ui(_) => unreachable!("handled above"),
    };
    done.map_err(|e| errors::unreachable(e, &target.server))
}

fn emit(text: &str) -> anyhow::Result<()> {
    // A closed pipe (`| head`) is the reader's choice, not an error to report.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The gates waiting for the caller: their inboxes (kept by the operator, readable by them alone)
/// plus what they may list in the namespace; `-A` lists every pending gate (needs the right).
async fn pending(client: Client, ns: &str, all: bool, output: Option<Format>) -> anyhow::Result<()> {
    let Some(format) = output else {
        return emit(&hitl_client::inbox_reader::pending(&client, ns, all).await?);
    };
    let gates: Vec<Approval> = if all {
        Api::<Approval>::all(client)
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter(|a| a.status.as_ref().and_then(|s| s.phase) == Some(ApprovalPhase::Pending))
            .collect()
    } else {
        waiting_for_me(&client, ns).await?
    };
    emit(&output::render(format, Shape::List, &gates)?)
}

/// The Approvals behind the caller's inbox entries and the namespace's pending gates they may
/// list, each read by name (a listed approver may `get` their gate).
async fn waiting_for_me(client: &Client, ns: &str) -> anyhow::Result<Vec<Approval>> {
    use hitl_client::inbox_reader;
    let me = inbox_reader::whoami(client).await?;
    let inboxes = inbox_reader::my_inboxes(client, &me).await?;
    // The output is the gates alone (JSON, YAML, names); the note goes where kubectl's warnings go.
    if let Some(note) = inbox_reader::left_out_note(&inboxes) {
        eprintln!("Warning: {note}");
    }
    let mut items: Vec<_> = inboxes.into_iter().flat_map(|s| s.items).collect();
    items.extend(inbox_reader::listed_gates(client, Some(ns)).await?.unwrap_or_default());
    let mut gates = vec![];
    for item in inbox_reader::merge(items) {
        match Api::<Approval>::namespaced(client.clone(), &item.namespace).get_opt(&item.name).await {
            Ok(Some(a)) => gates.push(a),
            Ok(None) => {}
            Err(e) if errors::is_forbidden(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(gates)
}

async fn get(client: &Client, ns: &str, gate: &str) -> anyhow::Result<Approval> {
    let target = target::resolve(client, ns, target::parse(gate)?).await?;
    let name = &target.name;
    match Api::<Approval>::namespaced(client.clone(), ns).get(name).await {
        Err(e) if errors::is_not_found(&e) && target.guessed.is_none() => {
            bail!("approval \"{name}\" not found in namespace \"{ns}\"")
        }
        other => other.map_err(|e| target.hint(e.into())),
    }
}

async fn describe(client: Client, ns: &str, gate: &str, output: Option<Format>) -> anyhow::Result<()> {
    let a = get(&client, ns, gate).await?;
    match output {
        Some(format) => emit(&output::render(format, Shape::One, &[a])?),
        None => {
            // An item's gate: how its forEach stands, if the caller may read the Workflow (an
            // approver's grant covers only the gate).
            let wf = match a.spec.item {
                Some(_) => Api::<Workflow>::namespaced(client.clone(), ns)
                    .get_opt(&a.spec.workflow_ref.name)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            emit(&describe::render_in(&a, wf.as_ref(), jiff::Timestamp::now()))
        }
    }
}

async fn decide(
    client: Client,
    ns: &str,
    gate: &str,
    patch: serde_json::Value,
    output: Option<Format>,
) -> anyhow::Result<()> {
    let target = target::resolve(&client, ns, target::parse(gate)?).await?;
    let name = target.name.clone();
    let a = decide::send(&client, ns, &name, &patch).await.map_err(|e| target.hint(e))?;
    match output {
        Some(format) => emit(&output::render(format, Shape::One, &[a])?),
        None => emit(&(decide::sentence(&a, &name, patch["spec"]["decision"].as_str().unwrap_or("")) + "\n")),
    }
}
