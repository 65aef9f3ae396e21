//! How far a long read has gone (a replay of a history, a report over the input topics):
//! the libraries say it, and only the command line draws a bar from it, so no library
//! writes to a terminal.

pub trait ReadProgress {
    /// Reading starts; `total_bytes` when it is known (files), none for topics read to
    /// their end.
    fn started(&self, total_bytes: Option<u64>);
    /// What is being read now (a topic's name), for a display that has no total.
    fn reading(&self, _what: &str) {}
    fn read(&self, bytes: u64);
    fn finished(&self);
}

/// No one watching.
impl ReadProgress for () {
    fn started(&self, _: Option<u64>) {}
    fn read(&self, _: u64) {}
    fn finished(&self) {}
}
