//! A small blocking client for the admin API. Every answer is checked to be Keygate's
//! (`answers::read`); the service's error answers come back as their message.

use crate::client::answers::{self, Answer, Call, Reply, MAX_ANSWER_BYTES};
use serde_json::Value;
use std::io::Read;
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

    pub fn get<T: Reply>(&self, path: &str, query: &[(&str, String)]) -> Result<T, String> {
        let mut request = self.request("GET", path);
        for (name, value) in query {
            request = request.query(name, value);
        }
        read(self.call("GET", path), request.call())
    }

    pub fn post<T: Reply>(&self, path: &str, body: &Value) -> Result<T, String> {
        let result = self.request("POST", path).send_json(body);
        read(self.call("POST", path), result)
    }

    pub fn patch<T: Reply>(&self, path: &str, body: &Value) -> Result<T, String> {
        let result = self.request("PATCH", path).send_json(body);
        read(self.call("PATCH", path), result)
    }

    pub fn delete<T: Reply>(&self, path: &str) -> Result<T, String> {
        let result = self.request("DELETE", path).call();
        read(self.call("DELETE", path), result)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{path}", self.base_url))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    fn call<'a>(&'a self, method: &'a str, path: &'a str) -> Call<'a> {
        Call {
            base_url: &self.base_url,
            method,
            path,
        }
    }
}

fn read<T: Reply>(call: Call, result: Result<ureq::Response, ureq::Error>) -> Result<T, String> {
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(transport)) => {
            return Err(format!("cannot reach the control service: {transport}"))
        }
    };
    let status = response.status();
    let media_type = response.header("content-type").map(answers::media_type);
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|error| {
            format!(
                "cannot read the answer of {} to {} {}: {error}",
                call.base_url, call.method, call.path
            )
        })?;
    let answer = Answer {
        status,
        media_type,
        body,
    };
    answers::read(call, &answer)
}
