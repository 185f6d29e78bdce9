//! The embedded store: append-only JSON-lines segments under a data directory.
//!
//! Each writer owns its own segment file, so several processes may share a directory. A crash
//! can leave a torn last line; readers skip and count it instead of failing.

use crate::{RecordSink, StoreError};
use shadowdiff_model::{decode, encode_record_into, DiffRecord};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

const SEGMENT_PREFIX: &str = "diffs-";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// A data directory of JSON-lines segments; each instance appends to a segment of its own.
#[derive(Debug)]
pub struct EmbeddedStore {
    dir: PathBuf,
    writer: Option<(PathBuf, File)>,
}

/// What reading the store found besides records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Segment files read.
    pub segments: usize,
    /// Records decoded.
    pub records: usize,
    /// Lines that were not valid records (torn writes, other schema versions).
    pub unreadable: usize,
}

impl EmbeddedStore {
    /// Opens (and creates) a data directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| io_err(&dir, source))?;
        Ok(Self { dir, writer: None })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn writer(&mut self) -> Result<&mut File, StoreError> {
        if self.writer.is_none() {
            let name = format!(
                "{SEGMENT_PREFIX}{}-{}{SEGMENT_SUFFIX}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                std::process::id()
            );
            let path = self.dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| io_err(&path, source))?;
            self.writer = Some((path, file));
        }
        match &mut self.writer {
            Some((_, file)) => Ok(file),
            None => unreachable!("writer was just set"),
        }
    }

    /// Reads every record of every segment, in segment order.
    pub fn read_all(&self) -> Result<(Vec<DiffRecord>, ReadStats), StoreError> {
        let mut stats = ReadStats::default();
        let mut segments: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(|source| io_err(&self.dir, source))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(SEGMENT_PREFIX) && n.ends_with(SEGMENT_SUFFIX))
            })
            .collect();
        segments.sort();
        let mut records = Vec::new();
        for path in segments {
            stats.segments += 1;
            let file = File::open(&path).map_err(|source| io_err(&path, source))?;
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(|source| io_err(&path, source))?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match decode::<DiffRecord>(&line) {
                    Ok(r) => {
                        stats.records += 1;
                        records.push(r);
                    }
                    Err(e) => {
                        stats.unreadable += 1;
                        tracing::warn!(segment = %path.display(), error = %e, "Skipped an unreadable record.");
                    }
                }
            }
        }
        Ok((records, stats))
    }
}

impl RecordSink for EmbeddedStore {
    fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            encode_record_into(&mut buf, r);
            buf.push(b'\n');
        }
        let dir = self.dir.clone();
        let file = self.writer()?;
        // One write per batch keeps lines whole; sync so that "Ok" means on disk.
        file.write_all(&buf)
            .map_err(|source| io_err(&dir, source))?;
        file.sync_data().map_err(|source| io_err(&dir, source))?;
        Ok(())
    }
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{Outcome, TargetRole, SCHEMA_VERSION};

    pub(crate) fn record(id: &str, outcome: Outcome) -> DiffRecord {
        DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: id.into(),
            captured_at_ms: 1,
            experiment: "e".into(),
            method: "GET".into(),
            route: "/a".into(),
            target: "v2".into(),
            role: TargetRole::Candidate,
            outcome,
            control_status: Some(200),
            target_status: Some(200),
            control_latency_us: Some(1000),
            target_latency_us: Some(2000),
            differences: vec![],
            noise: vec![],
            fingerprint: 0,
            detail: None,
            notes: vec![],
            side_effects: vec![],
        }
    }

    #[test]
    fn records_survive_reopen_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = EmbeddedStore::open(dir.path()).unwrap();
            s.write_batch(&[record("1", Outcome::Match), record("2", Outcome::Mismatch)])
                .unwrap();
        }
        // A torn write from a crashed process.
        fs::write(
            dir.path().join("diffs-zzz.jsonl"),
            b"{\"schema_version\":1,\"exch",
        )
        .unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let (records, stats) = s.read_all().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(stats.unreadable, 1);
        assert_eq!(stats.segments, 2);
    }
}
