//! Helpers for shadowdiff's tests (not published).
//!
//! [`ports`]: loopback ports for servers a test starts as child processes, chosen so that no
//! two calls in a process return the same port, and starts that try another port when the
//! child finds its port taken.

pub mod ports;
