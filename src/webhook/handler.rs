//! The AdmissionReview endpoint: reads the request, gathers what the cluster says (the
//! watched NodeGroups, the referenced Secret) and answers with `review.rs`'s verdict.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::runtime::reflector::Store;
use nodeboot_core::crd::{BootConfig, NodeGroup};
use nodeboot_core::secrets::Secrets;

use super::review::{ReferencedSecret, Verdict, review_boot_config, review_node_group};
use crate::metrics::{AdmissionKind, AdmissionResult, Metrics};

/// How long a review waits for the watches' first list after a start.
const SYNC_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ReviewState {
    pub client: Client,
    pub node_groups: Store<NodeGroup>,
    /// Secrets that opted in (the operator's own watch).
    pub secrets: Store<Secret>,
    pub metrics: Arc<Metrics>,
}

/// A review's verdict, and whether it judged the object or could not (counted apart).
struct Decision {
    verdict: Verdict,
    judged: bool,
}

impl From<Verdict> for Decision {
    fn from(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            judged: true,
        }
    }
}

pub async fn validate(
    State(state): State<ReviewState>,
    review: Result<Json<AdmissionReview<DynamicObject>>, JsonRejection>,
) -> Response {
    let request: Result<AdmissionRequest<DynamicObject>, (StatusCode, String)> = match review {
        // Too large, not JSON, not an AdmissionReview: axum's status and reason.
        Err(rejection) => Err((rejection.status(), rejection.body_text())),
        Ok(Json(review)) => review.try_into().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "an AdmissionReview (admission.k8s.io/v1) with a request is expected".to_owned(),
            )
        }),
    };
    let request = match request {
        Ok(request) => request,
        Err(answer) => {
            state
                .metrics
                .observe_admission(AdmissionKind::other, AdmissionResult::error);
            return answer.into_response();
        }
    };
    let response = AdmissionResponse::from(&request);
    let Decision { verdict, judged } = decide(&state, &request).await;
    let result = match (&verdict.refusal, judged) {
        (_, false) => AdmissionResult::error,
        (None, true) => AdmissionResult::allowed,
        (Some(_), true) => AdmissionResult::refused,
    };
    state
        .metrics
        .observe_admission(AdmissionKind::of(&request.kind.kind), result);
    tracing::info!(
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = %request.name,
        allowed = verdict.refusal.is_none(),
        ?result,
        "admission review"
    );
    let mut response = match verdict.refusal {
        Some(reason) => response.deny(reason),
        None => response,
    };
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    Json(response.into_review()).into_response()
}

async fn decide(state: &ReviewState, request: &AdmissionRequest<DynamicObject>) -> Decision {
    // Only creations and updates carry an object worth checking.
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::default().into();
    }
    let Some(object) = &request.object else {
        return Verdict::default().into();
    };
    match request.kind.kind.as_str() {
        "BootConfig" => match object.clone().try_parse::<BootConfig>() {
            Ok(mut config) => {
                config.metadata.namespace = request.namespace.clone();
                review_boot_config_in_cluster(state, &config).await.into()
            }
            Err(e) => unable(format!("not a BootConfig nodeboot can read: {e}")),
        },
        "NodeGroup" => match object.clone().try_parse::<NodeGroup>() {
            Ok(mut group) => {
                group.metadata.namespace = request.namespace.clone();
                if request.name.is_empty() {
                    // generateName: the name is not chosen yet, so nothing is "its own".
                    group.metadata.name = None;
                }
                if tokio::time::timeout(SYNC_WAIT, state.node_groups.wait_until_ready())
                    .await
                    .is_err()
                {
                    return unable(
                        "nodeboot has not loaded the NodeGroups yet, so it cannot check for \
                         duplicate MACs, names or NIDs; try again in a few seconds",
                    );
                }
                review_node_group(&group, &state.node_groups.state()).into()
            }
            Err(e) => unable(format!("not a NodeGroup nodeboot can read: {e}")),
        },
        other => unable(format!(
            "nodeboot's webhook checks BootConfigs and NodeGroups, not {other}: the \
             ValidatingWebhookConfiguration's rules are wrong"
        )),
    }
}

async fn review_boot_config_in_cluster(state: &ReviewState, config: &BootConfig) -> Verdict {
    let namespace = config.metadata.namespace.clone().unwrap_or_default();
    let Some(reference) = config
        .spec
        .cloud_init
        .as_ref()
        .and_then(|c| c.user_data_secret_ref.as_ref())
    else {
        return review_boot_config(config, ReferencedSecret::None);
    };
    let _ = tokio::time::timeout(SYNC_WAIT, state.secrets.wait_until_ready()).await;
    let opted_in = state.secrets.state().into_iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(&namespace)
            && s.metadata.name.as_deref() == Some(&reference.name)
    });
    if let Some(secret) = opted_in {
        let mut secrets = Secrets::default();
        secrets.insert(&secret);
        return review_boot_config(config, ReferencedSecret::OptedIn(&secrets));
    }
    // Not among the opted-in Secrets: does it exist at all? Asked for metadata only, so no
    // other Secret's data ever reaches this process; `list` with a name is what the operator's
    // Role already allows.
    let api: Api<Secret> = Api::namespaced(state.client.clone(), &namespace);
    let by_name = ListParams::default().fields(&format!("metadata.name={}", reference.name));
    match api.list_metadata(&by_name).await {
        Ok(list) if list.items.is_empty() => review_boot_config(config, ReferencedSecret::Missing),
        Ok(_) => review_boot_config(config, ReferencedSecret::NotOptedIn),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up a referenced Secret; checking the rest");
            review_boot_config(config, ReferencedSecret::Unknown)
        }
    }
}

/// Refused because the webhook could not judge, not because the object is wrong.
fn unable(message: impl Into<String>) -> Decision {
    Decision {
        verdict: Verdict {
            refusal: Some(message.into()),
            warnings: Vec::new(),
        },
        judged: false,
    }
}

/// Built once per listener.
pub fn router(state: ReviewState) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/validate", post(validate))
        .with_state(state)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REVIEW_BYTES,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
}

/// An AdmissionReview carries the object twice (new and old) plus its request: the API
/// server's own limit on an object is about 1.5 MiB.
const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;
