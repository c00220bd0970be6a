//! `append --batch`: requests from stdin, committed in groups of whatever input is available.

use std::collections::VecDeque;

use super::output::Output;
use super::stdin_lines::StdinLines;
use crate::append::Request;
use crate::batch::{Batcher, Outcome, StreamNumbers, open_file_budget};
use crate::exit_code::ExitCode;
use crate::line::Line;
use crate::{Error, Folder, Result, request_line};

/// The most requests committed in one group.
const GROUP_LINES: usize = 50_000;
/// The most requests to one stream in one group. A stream's lines are written in one piece;
/// beyond a few megabytes, a larger piece costs more (in fresh pages and in the kernel's
/// writeback) than the extra group's sync, which overlaps with planning the next one.
const GROUP_LINES_PER_STREAM: usize = 10_000;
pub fn run(folder: &Folder) -> Result<ExitCode> {
    let limit = folder.max_event_bytes();
    let mut input = StdinLines::spawn(limit, GROUP_LINES, |line| {
        line.map_err(|reason| Error::input("request", reason))
            .and_then(|l| request_line::parse(&l))
            .map(Request::encoded_ahead)
    });
    let mut out = Output::new();
    let mut first_refusal = None;
    let (open_files, split_streams) = open_file_budget();
    let mut batcher: Batcher<(u64, Vec<usize>)> = Batcher::new(open_files);
    let mut rounds = Rounds::default();
    // Reused from round to round: a round's requests can take tens of megabytes.
    let mut requests = Vec::new();
    loop {
        // A group still syncing overlaps with the next round only if that round is already
        // there: before waiting for input, what was written is made durable and answered.
        let ready = batcher.in_flight() && input.try_next_group(GROUP_LINES, &mut requests);
        if !ready {
            if let Some(done) = batcher.finish(folder) {
                rounds.deliver(done, &mut out, &mut first_refusal)?;
            }
            if !input.next_group(GROUP_LINES, &mut requests) {
                break;
            }
        }
        let streams_per_group = if requests.len() > split_streams {
            let docs = requests.iter().filter_map(|r| Some(&r.as_ref().ok()?.doc));
            batcher.streams_per_group(docs, split_streams)
        } else {
            split_streams
        };
        let groups = split_into_groups(&requests, streams_per_group);
        let round = rounds.start(requests.len(), groups.len());
        for group in groups {
            let group_requests: Vec<&Result<Request>> =
                group.iter().map(|&i| &requests[i]).collect();
            if let Some(done) = batcher.submit(folder, &group_requests, (round, group)) {
                rounds.deliver(done, &mut out, &mut first_refusal)?;
            }
        }
        input.recycle(&mut requests);
    }
    Ok(first_refusal.unwrap_or(ExitCode::Success))
}

/// The rounds of input whose results are not all printed yet: results go out in input order,
/// a round's once every group of it is durable.
#[derive(Default)]
struct Rounds {
    /// Each round's results so far and how many of its groups are still to come, oldest first.
    waiting: VecDeque<(Vec<Option<Outcome>>, usize)>,
    /// The number of the oldest waiting round, and of the input line it starts at.
    first_round: u64,
    first_line: u64,
}

impl Rounds {
    /// A round of `requests` split into `groups` groups; its number.
    fn start(&mut self, requests: usize, groups: usize) -> u64 {
        self.waiting
            .push_back(((0..requests).map(|_| None).collect(), groups));
        self.first_round + self.waiting.len() as u64 - 1
    }

    /// Takes a finished group's outcomes, and prints every round now complete.
    fn deliver(
        &mut self,
        ((round, indexes), outcomes): ((u64, Vec<usize>), Vec<Outcome>),
        out: &mut Output,
        first_refusal: &mut Option<ExitCode>,
    ) -> Result<()> {
        let (results, groups_left) = &mut self.waiting[(round - self.first_round) as usize];
        for (i, outcome) in indexes.into_iter().zip(outcomes) {
            results[i] = Some(outcome);
        }
        *groups_left -= 1;
        while self.waiting.front().is_some_and(|(_, left)| *left == 0) {
            let (results, _) = self.waiting.pop_front().expect("checked above");
            // Lines planned one after another go out in one write.
            let mut run: Option<Line> = None;
            for (n, outcome) in (self.first_line + 1..).zip(results) {
                match outcome.expect("every request has an outcome") {
                    Ok(line) => {
                        let absorbed = run.as_mut().is_some_and(|lines| lines.absorb(&line));
                        if !absorbed && let Some(lines) = run.replace(line) {
                            out.line(&lines)?;
                        }
                    }
                    Err(refused) => {
                        if let Some(lines) = run.take() {
                            out.line(&lines)?;
                        }
                        print_refusal(out, n, refused, first_refusal)?;
                    }
                }
                self.first_line = n;
            }
            if let Some(lines) = run {
                out.line(&lines)?;
            }
            self.first_round += 1;
            out.flush()?;
        }
        Ok(())
    }
}

/// Splits requests into groups of at most `streams_per_group` streams and at most
/// [`GROUP_LINES_PER_STREAM`] requests to one stream, each stream's requests in input order
/// across the groups (there is no order across streams to keep). Returns each group's
/// indexes into `requests`.
fn split_into_groups(requests: &[Result<Request>], streams_per_group: usize) -> Vec<Vec<usize>> {
    if requests.len() <= streams_per_group.min(GROUP_LINES_PER_STREAM) {
        return vec![(0..requests.len()).collect()];
    }
    // Each stream's latest group, and how many of its requests that group holds.
    let mut latest: Vec<(usize, usize)> = Vec::new();
    let mut numbers = StreamNumbers::default();
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut streams_in_last = 0;
    for (i, request) in requests.iter().enumerate() {
        let group = match request {
            Err(_) => 0,
            Ok(r) => {
                let (at, first) = numbers.of(&r.doc);
                if first {
                    latest.push((usize::MAX, 0));
                }
                let (group, count) = &mut latest[at];
                if *group == usize::MAX || *count == GROUP_LINES_PER_STREAM {
                    // A later group than the stream's last: the last one, if it is later and
                    // has room for one more stream, or a new one.
                    let last = groups.len() - 1;
                    let fits = streams_in_last < streams_per_group;
                    if (*group == usize::MAX || *group < last) && fits {
                        *group = last;
                    } else {
                        groups.push(Vec::new());
                        streams_in_last = 0;
                        *group = groups.len() - 1;
                    }
                    streams_in_last += 1;
                    *count = 0;
                }
                *count += 1;
                *group
            }
        };
        groups[group].push(i);
    }
    groups
}

fn print_refusal(
    out: &mut Output,
    line_no: u64,
    (code, message): (ExitCode, String),
    first_refusal: &mut Option<ExitCode>,
) -> Result<()> {
    first_refusal.get_or_insert(code);
    out.json(
        &serde_json::json!({"error": {"code": code.code(), "message": message}, "line": line_no}),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::DocId;

    fn requests(docs: impl IntoIterator<Item = String>) -> Vec<Result<Request>> {
        docs.into_iter()
            .map(|doc| {
                request_line::parse(format!(r#"{{"doc":"{doc}","set":{{"n":1}}}}"#).as_bytes())
            })
            .collect()
    }

    /// Every request in exactly one group; each stream's requests in input order across the
    /// groups, at most `per_stream` of them and at most `streams` streams in a group.
    fn check(requests: &[Result<Request>], groups: &[Vec<usize>], streams: usize) {
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..requests.len()).collect::<Vec<_>>());
        let doc = |i: usize| &requests[i].as_ref().unwrap().doc;
        let mut last_of: HashMap<&DocId, usize> = HashMap::new();
        for group in groups {
            let mut counts: HashMap<&DocId, usize> = HashMap::new();
            for &i in group {
                *counts.entry(doc(i)).or_default() += 1;
                if let Some(before) = last_of.insert(doc(i), i) {
                    assert!(before < i, "{} out of order", doc(i));
                }
            }
            assert!(
                counts.len() <= streams,
                "{} streams in a group",
                counts.len()
            );
            assert!(counts.values().all(|&n| n <= GROUP_LINES_PER_STREAM));
        }
    }

    #[test]
    fn one_busy_stream_is_split_into_groups_of_at_most_the_lines_per_stream() {
        let n = 2 * GROUP_LINES_PER_STREAM + 1000;
        let all = requests((0..n).map(|i| format!("d:{}", if i % 100 == 0 { i % 7 } else { 0 })));
        let groups = split_into_groups(&all, 8192);
        check(&all, &groups, 8192);
        assert_eq!(
            groups.len(),
            3,
            "{:?}",
            groups.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    #[test]
    fn many_streams_are_split_into_groups_of_at_most_the_streams_per_group() {
        let all = requests((0..5000).map(|i| format!("d:{}", i % 1200)));
        let groups = split_into_groups(&all, 500);
        check(&all, &groups, 500);
        assert_eq!(groups.len(), 3);
    }
}
