//! What can keep a client command from doing its job, by cause. Each prints as the one line the
//! CLI shows after `keygate-control: `.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The command line asks for something the client cannot send (a missing token, a bad
    /// `--url`, options that contradict each other).
    Usage(String),
    /// The control service could not be reached, or its answer could not be read.
    Unreachable(String),
    /// The service refused the call: its documented error, `message (CODE, HTTP status)`.
    Refused(String),
    /// What answered is not a Keygate control service, or not as this version expects it.
    NotKeygate(String),
    /// Paging did not end as the service promised.
    Paging(String),
    /// The answer could not be printed.
    Output(String),
    /// What was checked offline is not valid (`keys check`).
    Invalid(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Usage(message)
            | ClientError::Unreachable(message)
            | ClientError::Refused(message)
            | ClientError::NotKeygate(message)
            | ClientError::Paging(message)
            | ClientError::Output(message)
            | ClientError::Invalid(message) => f.write_str(message),
        }
    }
}
