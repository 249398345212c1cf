//! A client for the cluster the flags name, found as kubectl finds it.

use anyhow::{Context as _, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::ConnectFlags;

/// A client for the cluster, and where its calls go.
pub struct Target {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
}

pub async fn connect(flags: &ConnectFlags) -> anyhow::Result<Target> {
    connect_with(flags, true).await
}

/// As `connect`, saying whether the client retries what the server calls transient (429, 503,
/// 504): kube does, fifteen times over minutes, which a command that reports such an answer at
/// once must not.
pub async fn connect_with(flags: &ConnectFlags, retry: bool) -> anyhow::Result<Target> {
    let mut config = config(flags).await?;
    config.default_retry = retry;
    let namespace = flags.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).context("cannot build a client from the kubeconfig")?;
    Ok(Target { client, namespace, server })
}

/// The client configuration the flags name, as kubectl finds it.
pub async fn config(flags: &ConnectFlags) -> anyhow::Result<Config> {
    let options =
        KubeConfigOptions { context: flags.context.clone(), cluster: flags.cluster.clone(), user: flags.user.clone() };
    let chosen = options.context.is_some() || options.cluster.is_some() || options.user.is_some();
    let file = match &flags.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)?,
        // With nothing chosen, also in-cluster (a Pod's ServiceAccount), as kubectl does.
        None if !chosen => return Ok(Config::infer().await?),
        // $KUBECONFIG (several files merged) or ~/.kube/config.
        None => Kubeconfig::read()?,
    };
    check_names(&file, &options)?;
    Ok(Config::from_custom_kubeconfig(file, &options).await?)
}

/// kubectl's words for a name the kubeconfig lacks (kube would say "failed to load ...").
fn check_names(file: &Kubeconfig, options: &KubeConfigOptions) -> anyhow::Result<()> {
    if let Some(c) = options.context.as_ref().filter(|c| !file.contexts.iter().any(|n| &&n.name == c)) {
        bail!("context \"{c}\" does not exist in the kubeconfig");
    }
    if let Some(c) = options.cluster.as_ref().filter(|c| !file.clusters.iter().any(|n| &&n.name == c)) {
        bail!("cluster \"{c}\" does not exist in the kubeconfig");
    }
    if let Some(u) = options.user.as_ref().filter(|u| !file.auth_infos.iter().any(|n| &&n.name == u)) {
        bail!("user \"{u}\" does not exist in the kubeconfig");
    }
    Ok(())
}
