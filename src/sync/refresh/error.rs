//! Why a snapshot refresh failed, and whether the snapshot itself was at fault.

use std::fmt;

use crate::host::WriteError;
use crate::store::MetaError;
use crate::sync::refresh::MAX_BODY_BYTES;
use crate::sync::task::CallError;

/// Which write of the store record did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStep {
    /// Taking the record for this holder's fencing token, before the call.
    Take,
    /// Reserving the generation a full snapshot is written under.
    ReserveGeneration,
    /// Recording that a 304 confirmed the snapshot.
    RecordRefresh,
    /// Publishing the snapshot the pages made.
    RecordSnapshot,
}

impl MetaStep {
    fn what(self) -> &'static str {
        match self {
            MetaStep::Take => "take the store record",
            MetaStep::ReserveGeneration => "reserve a generation",
            MetaStep::RecordRefresh => "record refresh",
            MetaStep::RecordSnapshot => "record snapshot",
        }
    }
}

/// Why a refresh failed. The store is untouched beyond pages already applied; the last good
/// snapshot keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The call was not made, or not answered in time.
    Call(CallError),
    /// The call ended without a response.
    NoResponse,
    /// An HTTP status other than 200 or 304.
    Status(u32),
    /// A write of the store record was refused.
    Meta { step: MetaStep, error: MetaError },
    /// The page's keys could not be written to shared data.
    WriteKeys(WriteError),
    /// The rate-limit slots the snapshot needs could not be created.
    GrowSlots(WriteError),
    /// The lease ran out while the page was read, so it was not written.
    LeaseExpired,
    /// A page over `MAX_BODY_BYTES`, left unread.
    TooLarge { size: usize },
    /// The page does not parse (the reader's message: its error is not comparable).
    Unreadable(String),
    /// The page parses but is not a valid snapshot page (`contract::record::validate_page`).
    Invalid(String),
    /// A 304 answered a call for a follow-up page.
    NotModifiedMidLoad,
    /// A delta that does not start at the version and epoch we have.
    DeltaNotOurs,
    /// A follow-up page of another snapshot (epoch, or full against delta).
    NotTheSameSnapshot,
    /// A `next_cursor` with characters not allowed in a URL.
    BadCursor,
}

impl RefreshError {
    /// Whether the control service's answer was refused as a snapshot (counted apart from a
    /// refresh that failed for any other reason).
    pub fn rejected(&self) -> bool {
        matches!(
            self,
            RefreshError::TooLarge { .. }
                | RefreshError::Unreadable(_)
                | RefreshError::Invalid(_)
                | RefreshError::NotModifiedMidLoad
                | RefreshError::DeltaNotOurs
                | RefreshError::NotTheSameSnapshot
                | RefreshError::BadCursor
        )
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Call(CallError::TimedOut) => {
                f.write_str("control service did not answer in time")
            }
            RefreshError::Call(error) => write!(f, "{error}"),
            RefreshError::NoResponse => {
                f.write_str("call to the control service failed (no response)")
            }
            RefreshError::Status(status) => write!(f, "control service answered HTTP {status}"),
            RefreshError::Meta {
                step: MetaStep::Take,
                error,
            } => write!(f, "could not {}: {error:?}", MetaStep::Take.what()),
            RefreshError::Meta { step, error } => {
                let what = step.what();
                match error {
                    MetaError::Fenced => write!(
                        f,
                        "could not {what}: the refresh lease passed to another worker"
                    ),
                    MetaError::Write(error) => {
                        write!(f, "could not {what}: shared data refused ({error:?})")
                    }
                }
            }
            RefreshError::WriteKeys(error) => {
                write!(f, "could not write keys to shared data: {error:?}")
            }
            RefreshError::GrowSlots(error) => {
                write!(f, "could not create rate-limit slots: {error:?}")
            }
            RefreshError::LeaseExpired => {
                f.write_str("refresh lease expired before the page was written")
            }
            RefreshError::TooLarge { size } => write!(
                f,
                "snapshot page of {size} bytes is over the {MAX_BODY_BYTES} byte limit"
            ),
            RefreshError::Unreadable(reason) | RefreshError::Invalid(reason) => {
                write!(f, "snapshot rejected: {reason}")
            }
            RefreshError::NotModifiedMidLoad => f.write_str("304 for a follow-up page"),
            RefreshError::DeltaNotOurs => {
                f.write_str("snapshot rejected: delta does not start at our version")
            }
            RefreshError::NotTheSameSnapshot => {
                f.write_str("snapshot rejected: page does not belong to the same snapshot")
            }
            RefreshError::BadCursor => {
                f.write_str("snapshot rejected: next_cursor has characters not allowed in a URL")
            }
        }
    }
}

impl std::error::Error for RefreshError {}
