//! The sandbox's target parser (`shadowdiff_sandbox::Target`) against the `url` crate's WHATWG
//! parser (not the sandbox's code). Whatever `http://<input>/` target the sandbox accepts, `url`
//! must read as the same host (lower case, one trailing dot dropped) and port, with no userinfo:
//! the host the allowlist checks is the host a connection reaches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shadowdiff_sandbox::Target;

fuzz_target!(|authority: &str| {
    let text = format!("http://{authority}/");
    let Ok(uri) = text.parse::<http::Uri>() else {
        return;
    };
    let Some(Ok(target)) = Target::from_uri(&uri) else {
        return;
    };
    let parsed = match url::Url::parse(&text) {
        Ok(parsed) => parsed,
        // WHATWG's IDNA processing refuses `xn--` labels that are not valid punycode; a
        // resolver looks them up as they are, and the sandbox dials exactly what it checked.
        Err(url::ParseError::IdnaError) => return,
        Err(e) => panic!("the sandbox accepted {text:?}, url refuses it: {e}"),
    };
    assert!(parsed.username().is_empty() && parsed.password().is_none(), "{text:?}");
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    assert_eq!(target.host(), host, "{text:?}");
    assert_eq!(Some(target.port()), parsed.port_or_known_default(), "{text:?}");
});
