//! `kubectl hitl`: a kubectl plugin for people at the gates. Put it on PATH as `kubectl-hitl`.
//!
//!   kubectl hitl pending [-A]                      gates waiting for you (-A: all gates)
//!   kubectl hitl approve NAME [--input k=v]... [--comment TEXT]
//!   kubectl hitl reject NAME [--comment TEXT]
//!
//! It sends the same merge patch a person would type; the API server checks the input and who
//! decides, and records the decider.

use std::collections::BTreeMap;

use clap::{Parser, Subcommand};
use hitl_operator::api::Approval;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

#[derive(Parser)]
#[command(name = "kubectl hitl", about = "Decide hitl-operator gates")]
struct Args {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Path to a kubeconfig (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the gates that wait for a decision.
    Pending {
        /// In all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Approve a gate, with typed input: `--input priority=2` sends a number, `verdict=sign` a
    /// string; quote JSON strings to keep digits text (`--input 'code="007"'`).
    Approve {
        name: String,
        #[arg(long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a gate.
    Reject {
        name: String,
        #[arg(long)]
        comment: Option<String>,
    },
}

/// `k=v` to a key and a JSON value: JSON when it parses as a scalar, a string otherwise.
fn parse_input(kv: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = kv.split_once('=').ok_or_else(|| format!("--input {kv}: expected KEY=VALUE"))?;
    let value = match serde_json::from_str::<serde_json::Value>(v) {
        Ok(j) if !j.is_object() && !j.is_array() => j,
        _ => serde_json::Value::String(v.to_string()),
    };
    Ok((k.to_string(), value))
}

async fn client(args: &Args) -> anyhow::Result<(Client, String)> {
    let config = match &args.kubeconfig {
        Some(path) => {
            kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let ns = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, ns))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, ns) = client(&args).await?;
    let decide = |decision: &str, inputs: &[String], comment: &Option<String>| -> anyhow::Result<serde_json::Value> {
        let mut spec = serde_json::json!({ "decision": decision });
        if !inputs.is_empty() {
            let input: BTreeMap<_, _> =
                inputs.iter().map(|kv| parse_input(kv)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
            spec["input"] = serde_json::to_value(input)?;
        }
        if let Some(c) = comment {
            spec["comment"] = c.clone().into();
        }
        Ok(serde_json::json!({ "spec": spec }))
    };
    let (name, patch) = match &args.command {
        Command::Pending { all_namespaces } => {
            print!("{}", hitl_operator::inbox::pending(&client, &ns, *all_namespaces).await?);
            return Ok(());
        }
        Command::Approve { name, inputs, comment } => (name, decide("Approve", inputs, comment)?),
        Command::Reject { name, comment } => (name, decide("Reject", &[], comment)?),
    };
    let api: Api<Approval> = Api::namespaced(client, &ns);
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(a) if a.spec.required_approvals.is_some_and(|n| n > 1) => {
            // A quorum gate: the API server recorded the decision as this person's vote.
            let needed = a.spec.required_approvals.unwrap_or(1);
            println!("approval {name}: your vote is recorded ({} cast, {needed} approvals needed)", a.spec.votes.len());
            Ok(())
        }
        Ok(a) => {
            let verb = if patch["spec"]["decision"] == "Reject" { "rejected" } else { "approved" };
            println!("approval {name} {verb} by {}", a.spec.decided_by.unwrap_or_default());
            Ok(())
        }
        Err(kube::Error::Api(s)) => {
            eprintln!("error: {}", s.message);
            std::process::exit(1);
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_keep_their_json_types() {
        assert_eq!(parse_input("priority=2").unwrap(), ("priority".into(), serde_json::json!(2)));
        assert_eq!(parse_input("urgent=true").unwrap().1, serde_json::json!(true));
        assert_eq!(parse_input("verdict=sign").unwrap().1, serde_json::json!("sign"));
        assert_eq!(parse_input("code=\"007\"").unwrap().1, serde_json::json!("007"));
        assert_eq!(parse_input("notes=a=b").unwrap().1, serde_json::json!("a=b"));
        assert!(parse_input("novalue").is_err());
    }
}
