//! The fingerprint of a submission, for `Idempotency-Key`: SHA-256 over
//! the route, the scalar fields in order and, for each file, its name and
//! a digest of its bytes, fed as the parts stream by (nothing is kept).

use sha2::{Digest, Sha256};

/// A running digest of one submission. Every item is length-prefixed, so
/// two different submissions never feed the same bytes.
pub(crate) struct Fingerprint {
    outer: Sha256,
    file: Option<Sha256>,
}

impl Fingerprint {
    /// A digest of a submission to `route`.
    pub(crate) fn new(route: &str) -> Self {
        let mut fingerprint = Self {
            outer: Sha256::new(),
            file: None,
        };
        fingerprint.item(b"route");
        fingerprint.item(route.as_bytes());
        fingerprint
    }

    /// A scalar field (or a query parameter, named with a leading `?`).
    pub(crate) fn field(&mut self, name: &str, value: &str) {
        self.end_file();
        self.item(b"field");
        self.item(name.as_bytes());
        self.item(value.as_bytes());
    }

    /// The start of a file part named `name`.
    pub(crate) fn file(&mut self, name: &str) {
        self.end_file();
        self.item(b"file");
        self.item(name.as_bytes());
        self.file = Some(Sha256::new());
    }

    /// The next bytes of the current file.
    pub(crate) fn chunk(&mut self, bytes: &[u8]) {
        if let Some(file) = &mut self.file {
            file.update(bytes);
        }
    }

    /// A JSON body.
    pub(crate) fn json(&mut self, body: &[u8]) {
        self.end_file();
        self.item(b"json");
        self.item(body);
    }

    /// The digest, as lower-case hex.
    pub(crate) fn finish(mut self) -> String {
        self.end_file();
        hex::encode(self.outer.finalize())
    }

    fn end_file(&mut self) {
        if let Some(file) = self.file.take() {
            let digest = file.finalize();
            self.item(&digest);
        }
    }

    fn item(&mut self, bytes: &[u8]) {
        self.outer.update((bytes.len() as u64).to_be_bytes());
        self.outer.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    fn digest(build: impl FnOnce(&mut Fingerprint)) -> String {
        let mut fingerprint = Fingerprint::new("/api/tasks/x");
        build(&mut fingerprint);
        fingerprint.finish()
    }

    #[test]
    fn chunking_does_not_matter_but_content_does() {
        let whole = digest(|f| {
            f.field("a", "1");
            f.file("x.txt");
            f.chunk(b"hello world");
        });
        let split = digest(|f| {
            f.field("a", "1");
            f.file("x.txt");
            f.chunk(b"hello ");
            f.chunk(b"world");
        });
        assert_eq!(whole, split);
        let other = digest(|f| {
            f.field("a", "1");
            f.file("x.txt");
            f.chunk(b"hello world!");
        });
        assert_ne!(whole, other);
        let moved = digest(|f| {
            f.field("a", "1x");
            f.file(".txt");
            f.chunk(b"hello world");
        });
        assert_ne!(whole, moved);
    }
}
