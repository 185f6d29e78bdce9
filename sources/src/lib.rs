//! Offline capture inputs: traces recorded by other tools, turned into the same [`Exchange`]
//! records the tap produces (`shadowdiff import`; `shadowdiff_pipeline::offline` replays them).
//! A crate of its own: reading files needs none of the tap's networking.
//!
//! - [`envoy`]: Envoy's HTTP tap filter (`HttpBufferedTrace` JSON, one file per tap).
//! - [`goreplay`]: GoReplay `.gor` files (requests and their original responses).

pub mod envoy;
pub mod goreplay;

use shadowdiff_model::Exchange;
use std::path::{Path, PathBuf};

/// What an import read.
#[derive(Debug, Default)]
pub struct Imported {
    /// The exchanges made from the records that could be used.
    pub exchanges: Vec<Exchange>,
    /// Records that could not be used, each with where and why.
    pub skipped: Vec<String>,
}

/// Why an import stopped (a bad record is skipped instead, see [`Imported::skipped`]).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Files under `paths`: files as given, directories walked (sorted, recursively) for files
/// whose extension is one of `extensions`.
pub fn collect_files(paths: &[PathBuf], extensions: &[&str]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| ImportError::Read {
            path: p.display().to_string(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, extensions, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let err = |source| ImportError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, extensions, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// A time-sortable id for an exchange captured at `unix_ns` (UUIDv7 of that time).
pub(crate) fn id_at(unix_ns: u64) -> String {
    if unix_ns == 0 {
        return uuid::Uuid::now_v7().to_string();
    }
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        unix_ns / 1_000_000_000,
        (unix_ns % 1_000_000_000) as u32,
    );
    uuid::Uuid::new_v7(ts).to_string()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
