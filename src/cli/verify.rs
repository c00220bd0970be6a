use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Context, exit_codes, parse_docs};
use crate::exit_code::ExitCode;
use crate::verify::{Checkpoint, Report, verify};
use crate::{Error, Folder, Result};

/// Check every stream's hash chain, seq continuity and lines, and print the folder digest.
///
/// Exits 4 when a stream fails (naming the document, the first bad seq, the file and line),
/// when the digest differs from --expect-digest, or when a head recorded by --checkpoint is no
/// longer in place. A torn tail (bytes after the last newline, from an append that never
/// finished) is reported but is not a failure: the next append removes it. Files under
/// streams/ that eventdir did not write are reported as foreign.
///
/// Every schema stamp must resolve to an event of the folder's own sys:schema:TYPE stream;
/// documents written under an older schema version than the current one are reported as
/// lagging (a warning, not a failure).
///
/// The digest is SHA-256 over every stream's head (FORMAT.md): keep it, or a checkpoint,
/// outside the folder to detect a stream that was cut short or rolled back, which no hash
/// chain can show by itself. With DOC arguments, only those streams are checked and digested.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Examples:
  eventdir verify
  eventdir verify order:42 --json
  eventdir verify --save-checkpoint /backup/shop.checkpoint
  eventdir verify --checkpoint /backup/shop.checkpoint
  eventdir verify --expect-digest \"$(cat /backup/shop.digest)\"

", exit_codes!()))]
pub struct Args {
    /// Documents to verify [default: all]
    docs: Vec<String>,
    /// Print one JSON object instead of the human report
    #[arg(long)]
    json: bool,
    /// Fail unless the digest is exactly HEX
    #[arg(long, value_name = "HEX")]
    expect_digest: Option<String>,
    /// Record every stream's head (seq and hash) in FILE, if verification passes
    #[arg(long, value_name = "FILE")]
    save_checkpoint: Option<PathBuf>,
    /// Fail unless every head recorded in FILE is still in place
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
}

#[derive(Serialize)]
struct JsonReport {
    ok: bool,
    digest: String,
    streams: u64,
    events: u64,
    failed: Vec<JsonFailure>,
    torn_tails: Vec<JsonTorn>,
    foreign: Vec<String>,
    checkpoint_mismatches: Vec<JsonMismatch>,
    digest_mismatch: Option<String>,
    lagging: Vec<JsonLagging>,
}

#[derive(Serialize)]
struct JsonLagging {
    doc: String,
    schema: Option<u64>,
    current_schema: u64,
}

#[derive(Serialize)]
struct JsonFailure {
    doc: String,
    seq: Option<u64>,
    file: String,
    line: Option<u64>,
    reason: String,
}

#[derive(Serialize)]
struct JsonTorn {
    doc: String,
    after_seq: Option<u64>,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonMismatch {
    doc: String,
    reason: String,
}

pub fn run(args: Args, context: &Context) -> Result<ExitCode> {
    let named = parse_docs(&args.docs)?;
    let expect_digest = args.expect_digest.as_deref().map(str::to_ascii_lowercase);
    if let Some(hex) = &expect_digest
        && (hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Error::input(
            "--expect-digest",
            format!("{hex:?} is not 64 hex digits"),
        ));
    }
    let folder = context.open()?;
    let checkpoint = args
        .checkpoint
        .as_deref()
        .map(Checkpoint::load)
        .transpose()?;
    let named = (!named.is_empty()).then_some(named);
    let report = verify(
        &folder,
        named,
        checkpoint.as_ref(),
        args.save_checkpoint.is_some(),
    )?;
    let digest = crate::event::encode_hex(report.digest);
    let digest_mismatch = expect_digest
        .filter(|hex| *hex != digest)
        .map(|hex| format!("the digest is {digest}, not the expected {hex}"));
    let json = to_json(&folder, &report, &digest, digest_mismatch.clone());
    let mut out = super::output::Output::new();
    if args.json {
        out.json(&json)?;
    } else {
        for line in human(&json) {
            out.line(&line)?;
        }
    }
    out.flush()?;
    if !json.ok {
        return Err(Error::VerifyFailed {
            summary: summary(&json),
        });
    }
    if let Some(path) = &args.save_checkpoint {
        let heads = report.heads.as_deref().unwrap_or_default();
        Checkpoint::new(&folder, heads, &report.digest).save(path)?;
    }
    Ok(ExitCode::Success)
}

fn relative(folder: &Folder, path: &Path) -> String {
    path.strip_prefix(folder.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn to_json(
    folder: &Folder,
    report: &Report,
    digest: &str,
    digest_mismatch: Option<String>,
) -> JsonReport {
    let failed = report
        .failed
        .iter()
        .map(|s| JsonFailure {
            doc: s.doc.to_string(),
            seq: s.failure.seq,
            file: relative(folder, &s.path),
            line: s.failure.line,
            reason: s.failure.reason.clone(),
        })
        .collect();
    let torn_tails = report
        .torn_tails
        .iter()
        .map(|t| JsonTorn {
            doc: t.doc.to_string(),
            after_seq: t.after_seq,
            bytes: t.bytes,
        })
        .collect();
    let checkpoint_mismatches = report
        .checkpoint_mismatches
        .iter()
        .map(|(doc, reason)| JsonMismatch {
            doc: doc.clone(),
            reason: reason.clone(),
        })
        .collect();
    JsonReport {
        ok: report.passed() && digest_mismatch.is_none(),
        digest: digest.to_string(),
        streams: report.streams,
        events: report.events,
        failed,
        torn_tails,
        foreign: report.foreign.iter().map(|p| relative(folder, p)).collect(),
        checkpoint_mismatches,
        digest_mismatch,
        lagging: report
            .lagging
            .iter()
            .map(|l| JsonLagging {
                doc: l.doc.to_string(),
                schema: l.stamp,
                current_schema: l.current,
            })
            .collect(),
    }
}

fn human(report: &JsonReport) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &report.failed {
        let at = f.seq.map(|s| format!(" at seq {s}")).unwrap_or_default();
        let line = f.line.map(|l| format!(", line {l}")).unwrap_or_default();
        lines.push(format!(
            "FAILED {}{at}: {} ({}{line})",
            f.doc, f.reason, f.file
        ));
    }
    for m in &report.checkpoint_mismatches {
        lines.push(format!("CHECKPOINT {}: {}", m.doc, m.reason));
    }
    if let Some(m) = &report.digest_mismatch {
        lines.push(format!("DIGEST {m}"));
    }
    for t in &report.torn_tails {
        let after = t
            .after_seq
            .map(|s| format!("after seq {s}"))
            .unwrap_or_else(|| "before seq 0".to_string());
        lines.push(format!(
            "TORN {}: {} bytes {after} from an append that never finished (never acknowledged; the next append removes them)",
            t.doc, t.bytes
        ));
    }
    for l in &report.lagging {
        let stamp = l
            .schema
            .map_or("no schema".to_string(), |s| format!("schema seq {s}"));
        lines.push(format!(
            "LAGGING {}: written under {stamp}; the current schema is seq {} (`eventdir migrate` brings it up to date)",
            l.doc, l.current_schema
        ));
    }
    for path in &report.foreign {
        lines.push(format!("FOREIGN {path}: not written by eventdir (ignored)"));
    }
    lines.push(format!(
        "{} ({} streams, {} events)",
        if report.ok { "ok" } else { "FAILED" },
        report.streams,
        report.events
    ));
    lines.push(format!("digest {}", report.digest));
    lines
}

fn summary(report: &JsonReport) -> String {
    let mut parts = Vec::new();
    if !report.failed.is_empty() {
        let docs: Vec<&str> = report
            .failed
            .iter()
            .take(3)
            .map(|f| f.doc.as_str())
            .collect();
        let more = if report.failed.len() > 3 { ", ..." } else { "" };
        parts.push(format!(
            "{} broken stream(s): {}{more}",
            report.failed.len(),
            docs.join(", ")
        ));
    }
    if !report.checkpoint_mismatches.is_empty() {
        parts.push(format!(
            "{} checkpoint head(s) not in place",
            report.checkpoint_mismatches.len()
        ));
    }
    if report.digest_mismatch.is_some() {
        parts.push("the digest differs from --expect-digest".to_string());
    }
    parts.join("; ")
}
