//! What a person may read, as the cluster's own authorizer decides: a SubjectAccessReview as
//! them for `get workflows.hitl.dev`. Where they may get Workflows they read the namespace's
//! records whole; elsewhere only the records of gates they decided themselves. No rule of the
//! archive's own: whoever may read a namespace's runs may read their history.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use super::front_proxy::User;

/// Reviews in flight at once for one request that spans namespaces.
const REVIEWS_AT_ONCE: usize = 8;

/// Whether `user` may get Workflows in `namespace`; `None`: in every namespace (a cluster-wide
/// grant, such as a ClusterRoleBinding).
pub async fn may_read(client: &Client, user: &User, namespace: Option<&str>) -> Result<bool, kube::Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: Some(user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some("hitl.dev".into()),
                resource: Some("workflows".into()),
                verb: Some("get".into()),
                namespace: namespace.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The namespaces of `namespaces` that `user` reads whole: all of them after one review when
/// they may read every namespace, else those each review allows.
pub async fn readable(client: &Client, user: &User, namespaces: Vec<String>) -> Result<Vec<String>, kube::Error> {
    if may_read(client, user, None).await? {
        return Ok(namespaces);
    }
    let reviews = futures::stream::iter(namespaces).map(|namespace| async move {
        let allowed = may_read(client, user, Some(&namespace)).await?;
        Ok::<_, kube::Error>(allowed.then_some(namespace))
    });
    let answers: Vec<Option<String>> = reviews.buffered(REVIEWS_AT_ONCE).try_collect().await?;
    Ok(answers.into_iter().flatten().collect())
}
