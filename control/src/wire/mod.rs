//! The admin API's request and response bodies, as sent on the wire, and the validation of a
//! request into the domain's settings. The handlers (`api/`) answer with these types and the CLI
//! (`cli/client/`) reads the answers back into the very same ones.

pub mod leaks;
pub mod oauth;
pub mod plans;
pub mod proxies;
pub mod teams;
pub mod validate;
pub mod views;
pub mod webhooks;
