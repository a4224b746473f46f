//! Policy: everything the filter decides about a request from plain data, pure and tested on
//! the host. Where the credential is (`extract`), who the client is (`net`), which scope a
//! route needs (`routes`), an OAuth access token's claims (`token`), and the decision with its documented error answers (`decision`).
//! Uses the plugin configuration and the stored key; never the host.

pub mod decision;
pub mod extract;
pub mod net;
pub mod routes;
pub mod token;
