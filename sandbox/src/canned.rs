//! Canned answers for outbound calls: `method + host + path → status, headers, body`, from a TOML
//! or JSON file.
//!
//! ```toml
//! [[response]]
//! method = "GET"
//! host = "rates.internal"
//! path = "/eur"
//! status = 200
//! headers = { "content-type" = "application/json" }
//! body = '{"rate": 1.08}'
//! ```
//!
//! The JSON form is `{"response": [{...}, ...]}` with the same fields.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One canned answer and the calls it answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedResponse {
    /// HTTP method, e.g. `GET`; `*` matches any.
    pub method: String,
    /// Host name without port, e.g. `rates.internal`.
    pub host: String,
    /// Path without query, e.g. `/eur`.
    pub path: String,
    /// Status of the answer; 200 by default.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Headers of the answer.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body of the answer; empty by default.
    #[serde(default)]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

/// The canned responses file: `[[response]]` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canned {
    /// The answers, tried in order; the first that matches wins.
    #[serde(default)]
    pub response: Vec<CannedResponse>,
}

/// Why a canned responses file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CannedError {
    /// The file could not be read.
    #[error("cannot read canned responses {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON of this shape, or an entry has a bad status or path.
    #[error("canned responses {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the entry's index when it is one entry.
        message: String,
    },
}

impl Canned {
    /// Reads a `.json` file as JSON and anything else as TOML.
    pub fn from_file(path: &Path) -> Result<Self, CannedError> {
        let text = std::fs::read_to_string(path).map_err(|source| CannedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let parse = |message: String| CannedError::Parse {
            path: path.display().to_string(),
            message,
        };
        let canned: Canned = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| parse(e.to_string().trim_end().to_string()))?
        };
        for (i, r) in canned.response.iter().enumerate() {
            if http::StatusCode::from_u16(r.status).is_err() {
                return Err(parse(format!(
                    "response[{i}]: status {} is not an HTTP status",
                    r.status
                )));
            }
            if !r.path.starts_with('/') {
                return Err(parse(format!(
                    "response[{i}]: path `{}` must start with `/`",
                    r.path
                )));
            }
        }
        Ok(canned)
    }

    /// The first answer for this call: method (or `*`) and host compared ignoring case, path
    /// exactly.
    pub fn find(&self, method: &str, host: &str, path: &str) -> Option<&CannedResponse> {
        self.response.iter().find(|r| {
            (r.method == "*" || r.method.eq_ignore_ascii_case(method))
                && r.host.eq_ignore_ascii_case(host)
                && r.path == path
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_forms() {
        let dir = std::env::temp_dir().join(format!("sd-canned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = dir.join("c.toml");
        std::fs::write(
            &t,
            "[[response]]\nmethod = \"GET\"\nhost = \"rates\"\npath = \"/eur\"\nbody = \"1.08\"\n",
        )
        .unwrap();
        let c = Canned::from_file(&t).unwrap();
        assert_eq!(c.find("get", "RATES", "/eur").unwrap().status, 200);
        assert!(c.find("POST", "rates", "/eur").is_none());
        let j = dir.join("c.json");
        std::fs::write(
            &j,
            r#"{"response": [{"method": "*", "host": "a", "path": "/x", "status": 204}]}"#,
        )
        .unwrap();
        assert_eq!(
            Canned::from_file(&j)
                .unwrap()
                .find("DELETE", "a", "/x")
                .unwrap()
                .status,
            204
        );
        std::fs::write(
            &j,
            r#"{"response": [{"method": "GET", "host": "a", "path": "x"}]}"#,
        )
        .unwrap();
        assert!(Canned::from_file(&j)
            .unwrap_err()
            .to_string()
            .contains("response[0]"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
