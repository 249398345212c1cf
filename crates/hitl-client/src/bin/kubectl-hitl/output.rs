//! `-o json|yaml|name`: the Approval objects as kubectl prints them, for scripts.

use hitl_api::Approval;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::cli::Format;

/// One object as itself, several (or a listing, even of one) as a `v1` `List`, as kubectl does.
pub enum Shape {
    One,
    List,
}

/// The text to print for `objects` in `format`.
pub fn render(format: Format, shape: Shape, objects: &[Approval]) -> anyhow::Result<String> {
    if format == Format::Name {
        return Ok(objects.iter().map(|a| format!("approval.hitl.dev/{}\n", a.name_any())).collect());
    }
    let items = objects.iter().map(object).collect::<anyhow::Result<Vec<_>>>()?;
    let doc = match (shape, items.as_slice()) {
        (Shape::One, [one]) => one.clone(),
        _ => json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}),
    };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&doc)? + "\n",
        _ => serde_yaml::to_string(&doc)?,
    })
}

/// The object with apiVersion and kind, without managedFields (kubectl hides them too).
fn object(a: &Approval) -> anyhow::Result<Value> {
    let mut a = a.clone();
    a.metadata.managed_fields = None;
    Ok(serde_json::to_value(&a)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::ApprovalSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn approval(name: &str) -> Approval {
        let mut a = Approval::new(name, ApprovalSpec { step: "go".into(), ..Default::default() });
        a.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        a
    }

    #[test]
    fn one_object_is_itself_with_its_kind() {
        let text = render(Format::Json, Shape::One, &[approval("ship.go")]).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((v["kind"].as_str(), v["apiVersion"].as_str()), (Some("Approval"), Some("hitl.dev/v1alpha1")));
        assert_eq!(v["metadata"]["name"], "ship.go");
        assert!(v["metadata"].get("managedFields").is_none(), "{v}");
    }

    #[test]
    fn a_listing_is_a_list_in_yaml_too() {
        let text = render(Format::Yaml, Shape::List, &[approval("a.b")]).unwrap();
        let v: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"][0]["spec"]["step"], "go");
    }

    #[test]
    fn names_are_typed_as_kubectl_prints_them() {
        let text = render(Format::Name, Shape::List, &[approval("a.b"), approval("c.d")]).unwrap();
        assert_eq!(text, "approval.hitl.dev/a.b\napproval.hitl.dev/c.d\n");
    }
}
