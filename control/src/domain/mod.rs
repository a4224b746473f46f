//! The domain: plain typed data and the rules over it. No HTTP, no SQL: everything here runs in
//! unit tests with no database and no server.

pub mod clock;
pub mod cursor;
pub mod plans;
pub mod quota;
pub mod secrets;
pub mod served;
pub mod usage_range;
pub mod usage_report;
