//! Shell completion, two ways:
//! - `kubectl-hitl completion SHELL` prints clap's script for the `kubectl-hitl` command;
//! - `kubectl hitl <TAB>` goes through kubectl's own completion, which runs the executable
//!   `kubectl_complete-hitl` from PATH with the words typed after `hitl` (the last one being
//!   completed, maybe empty) and reads Cobra's `__complete` answer: one candidate a line
//!   (`value<TAB>description`), then `:DIRECTIVE`. That script calls `kubectl-hitl __complete`,
//!   answered here from the same clap definition, plus the names of the gates on the cluster.

use std::time::Duration;

use clap::{Arg, Command, CommandFactory};
use hitl_api::{Approval, ApprovalPhase};
use kube::api::ListParams;
use kube::config::Kubeconfig;
use kube::{Api, Client, ResourceExt};

use crate::cli::{Args, ConnectFlags};

/// The hidden first argument Cobra-style completion uses.
pub const COBRA: &str = "__complete";
/// Cobra's ShellCompDirectiveDefault: the shell may also complete file names.
const FILES: u8 = 0;
/// Cobra's ShellCompDirectiveNoFileComp.
const NO_FILES: u8 = 4;
/// How long completion may wait for the API server before it offers no gate names.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Writes clap's completion script for `shell`.
pub fn script(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Args::command(), "kubectl-hitl", out);
}

/// The answer to `kubectl-hitl __complete WORD... PARTIAL`, Cobra's format.
pub async fn cobra(words: &[String]) -> String {
    let (typed, partial) = match words.split_last() {
        Some((last, rest)) => (rest, last.as_str()),
        None => (&[][..], ""),
    };
    let mut root = Args::command();
    root.build(); // propagates the global flags to every command
    let at = walk(&root, typed);
    let (candidates, directive) = match at.flag_value {
        Some(arg) => flag_values(&arg, &at.connect).await,
        None if partial.starts_with('-') => (flags(at.command), NO_FILES),
        None => (arguments(&at).await, NO_FILES),
    };
    let mut out: String = candidates
        .into_iter()
        .filter(|(value, _)| value.starts_with(partial))
        .map(|(value, help)| if help.is_empty() { format!("{value}\n") } else { format!("{value}\t{help}\n") })
        .collect();
    out += &format!(":{directive}\n");
    out
}

/// Where the typed words lead: the command reached, its positional arguments so far, a flag
/// that still waits for its value, and the connection flags (to ask the right cluster).
struct Position<'a> {
    command: &'a Command,
    positionals: usize,
    flag_value: Option<Arg>,
    connect: ConnectFlags,
}

fn walk<'a>(root: &'a Command, typed: &[String]) -> Position<'a> {
    let mut at = Position { command: root, positionals: 0, flag_value: None, connect: ConnectFlags::default() };
    for word in typed {
        if let Some(arg) = at.flag_value.take() {
            remember(&mut at.connect, &arg, word);
        } else if let Some(long) = word.strip_prefix("--") {
            let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v)));
            let arg = at.command.get_arguments().find(|a| a.get_long() == Some(name));
            take(&mut at, arg, value);
        } else if let Some(short) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let c = short.chars().next().unwrap_or('-');
            let arg = at.command.get_arguments().find(|a| a.get_short() == Some(c));
            let rest = &short[c.len_utf8()..];
            take(&mut at, arg, (!rest.is_empty()).then_some(rest));
        } else if let Some(sub) = at.command.find_subcommand(word).filter(|_| at.positionals == 0) {
            at.command = sub;
        } else {
            at.positionals += 1;
        }
    }
    at
}

/// A flag was typed: note its value, or that the next word is its value.
fn take(at: &mut Position, arg: Option<&Arg>, value: Option<&str>) {
    let Some(arg) = arg.filter(|a| a.get_action().takes_values()) else {
        return;
    };
    match value {
        Some(v) => remember(&mut at.connect, arg, v),
        None => at.flag_value = Some(arg.clone()),
    }
}

fn remember(connect: &mut ConnectFlags, arg: &Arg, value: &str) {
    let v = Some(value.to_string());
    match arg.get_id().as_str() {
        "namespace" => connect.namespace = v,
        "kubeconfig" => connect.kubeconfig = v.map(Into::into),
        "context" => connect.context = v,
        "cluster" => connect.cluster = v,
        "user" => connect.user = v,
        _ => {}
    }
}

fn first_line(text: Option<&clap::builder::StyledStr>) -> String {
    text.map(|t| t.to_string().lines().next().unwrap_or_default().to_string()).unwrap_or_default()
}

fn flags(command: &Command) -> Vec<(String, String)> {
    let visible = command.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional());
    visible.filter_map(|a| Some((format!("--{}", a.get_long()?), first_line(a.get_help())))).collect()
}

async fn flag_values(arg: &Arg, connect: &ConnectFlags) -> (Vec<(String, String)>, u8) {
    match arg.get_id().as_str() {
        "kubeconfig" => (vec![], FILES),
        "context" => (contexts(connect), NO_FILES),
        "namespace" => (namespaces(connect).await, NO_FILES),
        _ => (possible_values(arg), NO_FILES),
    }
}

fn possible_values(arg: &Arg) -> Vec<(String, String)> {
    let values = arg.get_possible_values().into_iter().filter(|v| !v.is_hide_set());
    values.map(|v| (v.get_name().to_string(), first_line(v.get_help()))).collect()
}

async fn arguments(at: &Position<'_>) -> Vec<(String, String)> {
    let visible = at.command.get_subcommands().filter(|s| !s.is_hide_set());
    let subcommands: Vec<_> = visible.map(|s| (s.get_name().to_string(), first_line(s.get_about()))).collect();
    if !subcommands.is_empty() {
        return subcommands;
    }
    let Some(first) = at.command.get_arguments().filter(|a| a.is_positional()).nth(at.positionals) else {
        return vec![];
    };
    match (at.command.get_name(), first.get_id().as_str()) {
        ("describe", "gate") => gates(&at.connect, false).await,
        (_, "gate") => gates(&at.connect, true).await,
        _ => possible_values(first),
    }
}

/// The gates in the namespace, with their message; only those still waiting when `pending`.
async fn gates(connect: &ConnectFlags, pending: bool) -> Vec<(String, String)> {
    let Some(list) = lookup(connect, |c: Client, ns: &str| Api::<Approval>::namespaced(c, ns)).await else {
        return vec![];
    };
    let open = |a: &Approval| a.status.as_ref().and_then(|s| s.phase) == Some(ApprovalPhase::Pending);
    list.into_iter()
        .filter(|a| !pending || open(a))
        .map(|a| (a.name_any(), a.spec.message.clone().unwrap_or_default().lines().next().unwrap_or("").to_string()))
        .collect()
}

async fn namespaces(connect: &ConnectFlags) -> Vec<(String, String)> {
    let all = |c: Client, _: &str| Api::<k8s_openapi::api::core::v1::Namespace>::all(c);
    let list = lookup(connect, all).await.unwrap_or_default();
    list.into_iter().map(|n| (n.name_any(), String::new())).collect()
}

/// Lists objects, or nothing when the cluster cannot answer quickly: completion never prints
/// errors into the person's command line.
async fn lookup<K>(connect: &ConnectFlags, api: impl FnOnce(Client, &str) -> Api<K>) -> Option<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ask = async {
        let target = crate::connect::connect(connect).await.ok()?;
        api(target.client, &target.namespace).list(&ListParams::default()).await.ok().map(|l| l.items)
    };
    tokio::time::timeout(LOOKUP_TIMEOUT, ask).await.ok().flatten()
}

fn contexts(connect: &ConnectFlags) -> Vec<(String, String)> {
    let file = match &connect.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).ok(),
        None => Kubeconfig::read().ok(),
    };
    let named = file.map(|f| f.contexts).unwrap_or_default();
    named.into_iter().map(|c| (c.name, String::new())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(words: &[&str]) -> String {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(cobra(&words))
    }

    #[test]
    fn the_first_word_is_a_command() {
        let out = complete(&[""]);
        for want in ["pending\t", "describe\t", "approve\t", "reject\t", "completion\t"] {
            assert!(out.contains(want), "{want:?} missing from:\n{out}");
        }
        assert!(out.ends_with(":4\n"), "{out}");
        assert!(!out.contains(COBRA), "{out}");
        assert_eq!(
            complete(&["de"]),
            "describe\tShow a gate: message, inputs, who may decide, time left, votes, decision\n:4\n"
        );
    }

    #[test]
    fn flags_of_the_command_and_the_global_ones() {
        let out = complete(&["approve", "x", "--"]);
        for want in ["--input\t", "--comment\t", "--output\t", "--context\t", "--namespace\t", "--kubeconfig\t"] {
            assert!(out.contains(want), "{want:?} missing from:\n{out}");
        }
        assert!(!out.contains("--all-namespaces"), "{out}");
    }

    #[test]
    fn history_offers_its_filters_and_formats() {
        let out = complete(&["history", "--"]);
        for want in ["--workflow\t", "--approver\t", "--since\t", "--verify\t", "--all-namespaces\t"] {
            assert!(out.contains(want), "{want:?} missing from:\n{out}");
        }
        let formats = complete(&["history", "-o", ""]);
        for want in ["table\t", "json\t", "yaml\t", "csv\t"] {
            assert!(formats.contains(want), "{want:?} missing from:\n{formats}");
        }
    }

    #[test]
    fn flag_values_are_offered() {
        assert_eq!(
            complete(&["pending", "-o", "y"]),
            "yaml\tThe Approval object(s) as YAML; several as a `v1` `List`\n:4\n"
        );
        assert!(complete(&["completion", "z"]).starts_with("zsh"));
        assert_eq!(complete(&["--kubeconfig", ""]), ":0\n");
    }
}
