//! The command line: every command and flag, with the help text `--help` prints and the shell
//! completion scripts are generated from.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl hitl",
    bin_name = "kubectl hitl",
    version,
    about = "Decide hitl-operator gates: list, describe, approve and reject Approvals",
    after_help = "A GATE is an Approval name (WORKFLOW.STEP, as `pending` lists it), \
                  approval.hitl.dev/NAME (what `-o name` prints), or WORKFLOW/STEP."
)]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Where to connect, as kubectl takes it. kubectl passes a plugin none of its own flags, so the
/// plugin reads them itself; they may come before or after the command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectFlags {
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use (default: the context's).
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use (default: the context's).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
}

/// Machine-readable output, as kubectl's `-o`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Approval object(s) as JSON; several as a `v1` `List`.
    Json,
    /// The Approval object(s) as YAML; several as a `v1` `List`.
    Yaml,
    /// `approval.hitl.dev/NAME`, one a line.
    Name,
}

/// `history`'s output, as kubectl's `-o`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HistoryFormat {
    /// One line per record: when, namespace, workflow, step, outcome, who decided, comment.
    #[default]
    Table,
    /// The RecordList as the archive returned it, each record's content as hashed.
    Json,
    /// The RecordList as YAML.
    Yaml,
    /// The table's columns and each record's place and hash, for spreadsheets.
    Csv,
}

#[derive(clap::Args, Debug, Default)]
pub struct HistoryArgs {
    /// In every namespace: those you may read whole, and your own decisions in the others.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only this Workflow's records.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only the gates this user decided.
    #[arg(long, value_name = "USER")]
    pub approver: Option<String>,
    /// Only records since then: an age (30d, 12h) or a time (2026-01-31T00:00:00Z).
    #[arg(long, value_name = "AGE|TIME")]
    pub since: Option<String>,
    /// At most this many records (the oldest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Output format.
    #[arg(short, long, value_name = "FORMAT", default_value = "table")]
    pub output: HistoryFormat,
    /// Check each namespace's hash chain instead of listing records; exits non-zero when one is
    /// broken. Reads whole namespaces, so it takes no filters.
    #[arg(long, conflicts_with_all = ["workflow", "approver", "since", "limit", "output"])]
    pub verify: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the gates that wait for a decision.
    Pending {
        /// In every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short, long, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Show a gate: message, inputs, who may decide, time left, votes, decision.
    Describe {
        /// The gate: NAME, approval.hitl.dev/NAME or WORKFLOW/STEP.
        gate: String,
        /// Output format (default: for humans).
        #[arg(short, long, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Approve a gate.
    ///
    /// Inputs keep their JSON types: `--input priority=2` sends a number, `verdict=sign` a
    /// string; quote JSON strings to keep digits text (`--input 'code="42"'`).
    Approve {
        /// The gate: NAME, approval.hitl.dev/NAME or WORKFLOW/STEP.
        gate: String,
        /// A value for one of the gate's inputs; repeat for several.
        #[arg(long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// Why you decided so.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Print the decided Approval in this format instead of a sentence.
        #[arg(short, long, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Reject a gate.
    Reject {
        /// The gate: NAME, approval.hitl.dev/NAME or WORKFLOW/STEP.
        gate: String,
        /// Why you decided so.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Print the decided Approval in this format instead of a sentence.
        #[arg(short, long, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Print the logs a gate shows as evidence (the gate's approvers may read them while it waits).
    Logs {
        /// The gate: NAME, approval.hitl.dev/NAME or WORKFLOW/STEP.
        gate: String,
        /// Only this evidence step's log.
        #[arg(long, value_name = "NAME")]
        step: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each log.
        #[arg(long, value_name = "N")]
        tail: Option<i64>,
    },
    /// Read the decision archive: who decided which gate, when, and how runs ended.
    ///
    /// Read through the API server as you: a namespace where you may get Workflows is shown
    /// whole; elsewhere only the gates you decided. `--verify` checks each namespace's hash chain
    /// on this machine, so the archive's server need not be trusted for that.
    History(HistoryArgs),
    /// Serve the approval pages (inbox, gate forms, live runs) to a browser.
    ///
    /// Locally (the default) it serves on 127.0.0.1 with your own kubeconfig credentials and opens
    /// the browser on an address that carries this session's secret. With `--auth-proxy` it
    /// serves behind an authenticating proxy and impersonates the user and groups the proxy
    /// names (in-cluster mode; see the chart's `ui` values).
    Ui(hitl_client::ui::cli::UiArgs),
    /// Print a shell completion script.
    ///
    /// The script completes the `kubectl-hitl` command (`source <(kubectl-hitl completion bash)`).
    /// `kubectl hitl <TAB>` completes through kubectl's own completion instead, when the
    /// `kubectl_complete-hitl` script that ships with the plugin is on PATH.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn connection_flags_go_before_or_after_the_command() {
        let before = Args::try_parse_from(["kubectl-hitl", "--context", "c", "-n", "x", "pending", "-A"]).unwrap();
        let after = Args::try_parse_from(["kubectl-hitl", "pending", "-A", "--context", "c", "-n", "x"]).unwrap();
        for a in [before, after] {
            assert_eq!(a.connect.context.as_deref(), Some("c"));
            assert_eq!(a.connect.namespace.as_deref(), Some("x"));
            assert!(matches!(a.command, Command::Pending { all_namespaces: true, output: None }));
        }
    }

    #[test]
    fn an_unknown_output_format_is_refused() {
        assert!(Args::try_parse_from(["kubectl-hitl", "describe", "x", "-o", "wide"]).is_err());
        let a = Args::try_parse_from(["kubectl-hitl", "describe", "x", "-o", "yaml"]).unwrap();
        assert!(matches!(a.command, Command::Describe { output: Some(Format::Yaml), .. }));
    }
}
