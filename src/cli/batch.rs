//! `append --batch`: requests from stdin, committed in groups of whatever input is available.

use std::collections::HashMap;

use serde_json::Value;

use super::output::Output;
use super::stdin_lines::StdinLines;
use crate::append::{Action, Expect, Request};
use crate::batch::{HeadCache, Outcome, append_batch};
use crate::exit_code::ExitCode;
use crate::{DocId, Error, Folder, Result, json, patch, state};

/// The most requests committed in one group.
const GROUP_LINES: usize = 50_000;
/// The most streams one group holds open and locked, when the open-file limit allows.
const GROUP_STREAMS: usize = 8192;

/// How many streams a group may hold open, and how many more files may stay open between
/// groups: [`GROUP_STREAMS`], or fewer under a low limit of open files (raised to its hard
/// limit first, as a process that needs many files may; some are left for everything else).
fn open_file_budget() -> (usize, usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (16, 0);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max.min(1 << 20),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let available = (limit.rlim_cur as usize).saturating_sub(64);
    let per_group = (available / 2).clamp(1, GROUP_STREAMS);
    (per_group, available.saturating_sub(per_group))
}

pub fn run(folder: &Folder) -> Result<ExitCode> {
    let limit = folder.max_event_bytes();
    let input = StdinLines::spawn(limit, GROUP_LINES, |line| {
        line.map_err(|reason| Error::input("request", reason))
            .and_then(|l| resolve(&l))
    });
    let mut out = Output::new();
    let mut first_refusal = None;
    let (streams_per_group, kept_open) = open_file_budget();
    let mut cache = HeadCache::new(kept_open);
    let mut line_no: u64 = 0;
    // Reused from round to round: a round's requests can take tens of megabytes.
    let mut requests = Vec::new();
    while input.next_group(GROUP_LINES, &mut requests) {
        line_no += requests.len() as u64;
        let mut outcomes: Vec<Option<Outcome>> = (0..requests.len()).map(|_| None).collect();
        for group in split_by_streams(&requests, streams_per_group) {
            let group_requests: Vec<&Result<Request>> =
                group.iter().map(|&i| &requests[i]).collect();
            for (i, outcome) in
                group
                    .into_iter()
                    .zip(append_batch(folder, &group_requests, &mut cache))
            {
                outcomes[i] = Some(outcome);
            }
        }
        requests.clear();
        // Results go out in input order, once every group of this round is durable.
        let first = line_no + 1 - outcomes.len() as u64;
        for (n, outcome) in (first..).zip(outcomes) {
            print(
                &mut out,
                n,
                outcome.expect("every request has an outcome"),
                &mut first_refusal,
            )?;
        }
        out.flush()?;
    }
    Ok(first_refusal.unwrap_or(ExitCode::Success))
}

/// Splits requests into groups touching at most `streams_per_group` streams each, every stream's
/// requests in one group and in input order (there is no order across streams to keep).
/// Returns each group's indexes into `requests`.
fn split_by_streams(requests: &[Result<Request>], streams_per_group: usize) -> Vec<Vec<usize>> {
    if requests.len() <= streams_per_group {
        return vec![(0..requests.len()).collect()];
    }
    let mut group_of: HashMap<&DocId, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut streams_in_last = 0;
    for (i, request) in requests.iter().enumerate() {
        let group = match request {
            Err(_) => 0,
            Ok(r) => *group_of.entry(&r.doc).or_insert_with(|| {
                if streams_in_last == streams_per_group {
                    groups.push(Vec::new());
                    streams_in_last = 0;
                }
                streams_in_last += 1;
                groups.len() - 1
            }),
        };
        groups[group].push(i);
    }
    groups
}

fn print(
    out: &mut Output,
    line_no: u64,
    outcome: Outcome,
    first_refusal: &mut Option<ExitCode>,
) -> Result<()> {
    match outcome {
        Ok(line) => out.line(&line),
        Err((code, message)) => {
            first_refusal.get_or_insert(code);
            out.json(&serde_json::json!({"error": {"code": code.code(), "message": message}, "line": line_no}))
        }
    }
}

/// Turns one input line into a validated request.
fn resolve(text: &[u8]) -> Result<Request> {
    let Value::Object(mut members) = json::parse_strict(text, "request")? else {
        return Err(Error::input(
            "request",
            "expected a JSON object {\"doc\": ..., ...}",
        ));
    };
    if let Some(unknown) = members
        .keys()
        .find(|k| !["doc", "type", "data", "set", "expect", "meta"].contains(&k.as_str()))
    {
        return Err(Error::input(
            "request",
            format!("unknown member {unknown:?}"),
        ));
    }
    let doc = match members.remove("doc") {
        Some(Value::String(doc)) => DocId::parse_writable(&doc)?,
        _ => {
            return Err(Error::input(
                "request",
                "\"doc\" must be a document id string",
            ));
        }
    };
    let expect = match members.remove("expect") {
        None => Expect::Any,
        Some(Value::String(text)) => Expect::parse(&text)?,
        Some(Value::Number(n)) => Expect::Seq(
            n.as_u64()
                .ok_or_else(|| Error::input("expect", "must be a seq"))?,
        ),
        Some(_) => return Err(Error::input("expect", "must be a seq, \"none\" or \"any\"")),
    };
    let meta = match members.remove("meta") {
        None | Some(Value::Null) => None,
        Some(meta @ Value::Object(_)) => Some(meta),
        Some(_) => return Err(Error::input("meta", "must be a JSON object")),
    };
    let data = members.remove("data");
    let set = members.remove("set");
    let kind = match members.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => {
            return Err(Error::input(
                "type",
                "must be \"create\", \"update\" or \"delete\"",
            ));
        }
        None => match (&data, &set) {
            (Some(Value::Object(_)), None) => "create".to_string(),
            (Some(Value::Array(_)), None) | (None, Some(_)) => "update".to_string(),
            _ => {
                return Err(Error::input(
                    "request",
                    "give \"data\" (create or update), \"set\" (update) or \"type\": \"delete\"",
                ));
            }
        },
    };
    let action = match (kind.as_str(), data, set) {
        ("create", Some(state), None) => {
            state::check_new_state(&state, "data")?;
            Action::Create(state)
        }
        ("update", Some(value), None) => Action::Update(patch::parse(value, "data")?),
        ("update", None, Some(Value::Object(sets))) => {
            Action::Update(patch::from_sets(&sets.into_iter().collect::<Vec<_>>())?)
        }
        ("delete", None, None) => Action::Delete,
        ("create" | "update" | "delete", _, _) => {
            return Err(Error::input(
                "request",
                format!(
                    "a {kind} takes {}",
                    match kind.as_str() {
                        "create" => "\"data\" (an object)",
                        "update" => "\"data\" (a patch) or \"set\" (an object), not both",
                        _ => "neither \"data\" nor \"set\"",
                    }
                ),
            ));
        }
        _ => {
            return Err(Error::input(
                "type",
                format!("{kind:?} is not create, update or delete"),
            ));
        }
    };
    let mut request = Request {
        doc,
        action,
        expect,
        meta,
        payload: None,
    };
    request.prepare();
    Ok(request)
}
