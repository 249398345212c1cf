//! The categories of a reconcile's errors, used as Event reason, log field and metric label. They
//! sit below both the controllers that report them and the metrics that count them, so that
//! `metrics` needs nothing of the controllers.

/// What kind of failure a reconcile error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCategory {
    /// RBAC refused the operator, or a ServiceAccount does not exist yet.
    Forbidden,
    /// The object would outgrow what the API server stores.
    TooLarge,
    KubeError,
    CreateFailed,
    /// A child's name is taken by an object the Workflow does not own.
    NameTaken,
}

impl ErrorCategory {
    /// Every category (metrics start each at zero).
    pub const ALL: [ErrorCategory; 5] = [
        ErrorCategory::Forbidden,
        ErrorCategory::TooLarge,
        ErrorCategory::KubeError,
        ErrorCategory::CreateFailed,
        ErrorCategory::NameTaken,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Forbidden => "Forbidden",
            ErrorCategory::TooLarge => "TooLarge",
            ErrorCategory::KubeError => "KubeError",
            ErrorCategory::CreateFailed => "CreateFailed",
            ErrorCategory::NameTaken => "NameTaken",
        }
    }
}
