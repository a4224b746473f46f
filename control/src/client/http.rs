//! A small blocking client for the admin API; API errors come back as their message.

use serde_json::Value;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct AdminClient {
    agent: ureq::Agent,
    base_url: String,
    token: String,
}

impl AdminClient {
    pub fn new(base_url: &str, token: String) -> Self {
        AdminClient {
            agent: ureq::AgentBuilder::new().timeout(TIMEOUT).build(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
        }
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, String> {
        let mut request = self.request("GET", path);
        for (name, value) in query {
            request = request.query(name, value);
        }
        read_json(request.call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        read_json(self.request("POST", path).send_json(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, String> {
        read_json(self.request("PATCH", path).send_json(body))
    }

    pub fn delete(&self, path: &str) -> Result<(), String> {
        self.request("DELETE", path)
            .call()
            .map(|_| ())
            .map_err(describe_error)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{path}", self.base_url))
            .set("Authorization", &format!("Bearer {}", self.token))
    }
}

fn read_json(result: Result<ureq::Response, ureq::Error>) -> Result<Value, String> {
    let response = result.map_err(describe_error)?;
    response
        .into_json()
        .map_err(|error| format!("unreadable response: {error}"))
}

/// `name: must not be empty (VALIDATION_ERROR, HTTP 400)`, or why the service was unreachable.
fn describe_error(error: ureq::Error) -> String {
    match error {
        ureq::Error::Status(status, response) => {
            let body: Value = response.into_json().unwrap_or(Value::Null);
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no error message");
            let code = body["error"]["code"].as_str().unwrap_or("UNKNOWN");
            format!("{message} ({code}, HTTP {status})")
        }
        ureq::Error::Transport(transport) => {
            format!("cannot reach the control service: {transport}")
        }
    }
}
