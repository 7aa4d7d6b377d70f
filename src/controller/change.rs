//! What a reconcile changed, as typed values that carry their own event reason, so the
//! runtime publishes events without interpreting sentences.

/// Event reason of a change. `Warning` ones need a human's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An IAM entity was created.
    Created,
    /// An IAM entity's tags, boundary, groups or policies were brought back to the spec.
    Updated,
    /// A first access key was published.
    AccessKeyPublished,
    /// The access key was rotated (age or annotation); the previous one is in grace.
    AccessKeyRotated,
    /// The published key's Secret was lost or edited: a new key replaced it.
    AccessKeyReplaced,
    /// The published key was found deactivated out of band (incident response): it was
    /// replaced and deleted, never reactivated.
    AccessKeyRevoked,
    /// Keys this resource created were deleted (leftovers, expired previous keys).
    AccessKeysDeleted,
    /// `accessKey.enabled: false` removed the key and its Secret.
    AccessKeyDisabled,
    /// A console password was set.
    ConsolePasswordSet,
    /// The login profile was found deleted out of band: a fresh password was issued,
    /// never the old one.
    ConsolePasswordRevoked,
    /// `console.enabled: false` removed console access and its Secret.
    ConsoleDisabled,
    /// Credentials the operator did not create were found on a managed user.
    UnmanagedCredentials,
    /// Session credentials of a role were published (first, refreshed, or replaced).
    SessionCredentialsPublished,
    /// `sessionCredentials` was removed from the spec: its Secret was deleted.
    SessionCredentialsRemoved,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Created => "Created",
            Reason::Updated => "Updated",
            Reason::AccessKeyPublished => "AccessKeyPublished",
            Reason::AccessKeyRotated => "AccessKeyRotated",
            Reason::AccessKeyReplaced => "AccessKeyReplaced",
            Reason::AccessKeyRevoked => "AccessKeyRevoked",
            Reason::AccessKeysDeleted => "AccessKeysDeleted",
            Reason::AccessKeyDisabled => "AccessKeyDisabled",
            Reason::ConsolePasswordSet => "ConsolePasswordSet",
            Reason::ConsolePasswordRevoked => "ConsolePasswordRevoked",
            Reason::ConsoleDisabled => "ConsoleDisabled",
            Reason::UnmanagedCredentials => "UnmanagedCredentials",
            Reason::SessionCredentialsPublished => "SessionCredentialsPublished",
            Reason::SessionCredentialsRemoved => "SessionCredentialsRemoved",
        }
    }

    /// Whether the event is a `Warning` (someone should look) rather than `Normal`.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Reason::AccessKeyRevoked
                | Reason::ConsolePasswordRevoked
                | Reason::UnmanagedCredentials
        )
    }
}

/// One change, for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub reason: Reason,
    pub message: String,
}

/// What a reconcile did and when it wants to run again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Synced {
    pub changes: Vec<Change>,
    /// Ask to be reconciled again after this long (e.g. a rotation grace period ending).
    pub requeue_after: Option<std::time::Duration>,
}

impl Synced {
    pub fn note(&mut self, reason: Reason, message: impl Into<String>) {
        self.changes.push(Change {
            reason,
            message: message.into(),
        });
    }

    /// Requeues no later than `after`.
    pub fn requeue_within(&mut self, after: std::time::Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }

    /// The messages of all changes (tests and logs).
    pub fn messages(&self) -> Vec<String> {
        self.changes.iter().map(|c| c.message.clone()).collect()
    }
}
