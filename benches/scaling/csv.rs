//! The per-run CSV: one row per (workload, allocator, threads, rep).

use crate::runner::Sample;
use std::io::Write;
use std::path::Path;

pub const HEADER: &str = "workload,allocator,threads,rep,ops,wall_s,ops_per_s,peak_rss_kib,final_rss_kib,cpu_s,oversubscribed,status";

pub fn write(path: &Path, samples: &[Sample], cores: usize) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "{HEADER}")?;
    for s in samples {
        let over = s.threads > cores;
        match &s.outcome {
            Ok(m) => writeln!(
                f,
                "{},{},{},{},{},{:.6},{:.1},{},{},{:.3},{},ok",
                s.workload,
                s.allocator,
                s.threads,
                s.rep,
                m.ops,
                m.wall_s,
                m.ops_per_s(),
                m.peak_rss_kib,
                m.final_rss_kib,
                m.cpu_s,
                over
            )?,
            Err(e) => writeln!(
                f,
                "{},{},{},{},,,,,,,{},\"failed: {}\"",
                s.workload,
                s.allocator,
                s.threads,
                s.rep,
                over,
                e.replace('"', "'").replace('\n', " ")
            )?,
        }
    }
    f.flush()
}
