//! A stored line as an event holds it: in a string of its own, or as its part of a block of
//! lines read together, which the events read from the block share (no copy per line). A
//! batch's result lines are held the same way, one stream's lines of a group in one block.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A stored line, without its newline.
#[derive(Clone)]
pub struct Line(Text);

#[derive(Clone)]
enum Text {
    Own(String),
    InBlock(Arc<String>, Range<usize>),
}

impl Line {
    /// The line at `range` of `block`, which must fall on character boundaries.
    pub fn in_block(block: Arc<String>, range: Range<usize>) -> Line {
        debug_assert!(block.is_char_boundary(range.start) && block.is_char_boundary(range.end));
        Line(Text::InBlock(block, range))
    }

    /// Extends this text over `next` when `next` follows it in the same block, after one
    /// newline: consecutive lines, to be written in one piece. False (and nothing changed)
    /// otherwise.
    pub fn absorb(&mut self, next: &Line) -> bool {
        match (&mut self.0, &next.0) {
            (Text::InBlock(block, range), Text::InBlock(other, following))
                if Arc::ptr_eq(block, other) && following.start == range.end + 1 =>
            {
                range.end = following.end;
                true
            }
            _ => false,
        }
    }
}

impl From<String> for Line {
    fn from(text: String) -> Line {
        Line(Text::Own(text))
    }
}

impl Deref for Line {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            Text::Own(text) => text,
            Text::InBlock(block, range) => &block[range.clone()],
        }
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_the_same_on_its_own_or_in_a_block() {
        let block = Arc::new("first\nsécond\n".to_string());
        let own = Line::from("sécond".to_string());
        let shared = Line::in_block(Arc::clone(&block), 6..13);
        assert_eq!(&*own, &*shared);
        assert_eq!(format!("{shared:?}"), "\"sécond\"");
        let mut first = Line::in_block(Arc::clone(&block), 0..5);
        assert!(!first.absorb(&own));
        assert!(first.absorb(&shared));
        assert_eq!(&*first, "first\nsécond");
        assert!(!Line::in_block(Arc::clone(&block), 6..13).absorb(&shared));
    }
}
