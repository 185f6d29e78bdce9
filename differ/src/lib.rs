//! shadowdiff's diff engine.
//!
//! Pure and synchronous: no I/O, no clocks except the text-diff deadline. It decodes bodies
//! (content encodings, JSON, form, HTML, text), applies normalization [`Rules`], produces typed
//! [`Difference`](shadowdiff_model::Difference)s at dotted paths, classifies noise (A/A masking
//! with a secondary, volatile-value detectors) and fingerprints what is left.
//!
//! ```
//! use shadowdiff_differ::{diff_json, Rules};
//! use serde_json::json;
//! let d = diff_json(&json!({"price": 10}), &json!({"price": "10"}), &Rules::default(), "body");
//! assert_eq!(d[0].path, "body.price");
//! assert_eq!(d[0].kind.as_str(), "type");
//! ```

mod compare;
mod decode;
mod detect;
mod engine;
#[doc(hidden)]
pub mod fuzzing;
mod glob;
mod html;
mod json;
mod node;
mod parse;
mod repeat;
mod rules;
mod text;

pub use compare::{compare_responses, Comparison};
pub use decode::{body_format, decode_content, BodyFormat, DecodeError};
pub use detect::{
    format_change, format_class, is_random_token, is_timestamp, volatile_reason, volatility,
    FormatClass, VolatileKind, Volatility,
};
pub use engine::Differ;
pub use glob::PathGlob;
pub use html::{parse_html, HtmlError, MAX_HTML_BYTES, MAX_HTML_DEPTH, MAX_HTML_NODES};
pub use json::{diff_json, excerpt, hash_value};
pub use node::{Arena, Node, Num};
pub use parse::{ParseError, ParseErrorKind};
pub use repeat::{
    RepeatConfig, RepeatTracker, MAX_NAMES, MAX_NAME_LEN, MAX_REPEAT_FIELDS, MAX_REPEAT_REQUESTS,
};
pub use rules::{
    ArrayMode, ArrayRuleConfig, EndpointRulesConfig, Rules, RulesConfig, RulesError, ScrubConfig,
    Tolerance, DEFAULT_VOLATILE_HEADERS,
};
