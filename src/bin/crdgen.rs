//! Prints the CRDs as YAML; `crds/hitl.dev.yaml` is its output (checked by a test).
fn main() {
    print!("{}", hitl_operator::api::crds_yaml());
}
