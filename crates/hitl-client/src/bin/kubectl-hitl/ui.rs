//! `kubectl hitl ui`: the approval pages, as the person the kubeconfig names (see `hitl_client::ui`).

use hitl_client::ui::cli::{UiArgs, run as serve};

use crate::cli::ConnectFlags;
use crate::connect;

pub async fn run(flags: &ConnectFlags, args: UiArgs) -> anyhow::Result<()> {
    let config = connect::config(flags).await?;
    let namespace = flags.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    serve(config, namespace, args).await
}
