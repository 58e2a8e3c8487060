//! Files moving through a task: uploaded files in a request ([`Files`]),
//! objects stored by an upload step ([`StoredObjects`]), files on the local
//! disk ([`LocalFile`], [`DownloadedFiles`]), and the name sanitizer that
//! keeps hostile file names inside their archive or directory.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;

use crate::infra::{ByteStream, stream_bytes};

/// One uploaded file on its way into storage: a name as the client gave it
/// and a stream of its bytes.
pub struct IncomingFile {
    /// The client's file name, unsanitized.
    pub name: String,
    /// The declared media type.
    pub content_type: Option<String>,
    /// The size, when known in advance.
    pub size: Option<u64>,
    /// The bytes.
    pub body: ByteStream,
}

impl IncomingFile {
    /// A file whose bytes are in memory.
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<bytes::Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            name: name.into(),
            content_type: None,
            size: Some(bytes.len() as u64),
            body: stream_bytes(bytes),
        }
    }
}

impl fmt::Debug for IncomingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingFile")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A stream of files, read one after the other.
pub type FileStream = BoxStream<'static, std::io::Result<IncomingFile>>;

/// The uploaded files of a request: a one-shot stream of [`IncomingFile`]s.
///
/// A request field of this type is what an upload step's
/// `source = request.<field>` names. It is not serialized (mark the field
/// `#[serde(skip)]`): the upload step consumes it on the API side and the
/// worker receives the stored objects' keys instead.
///
/// ```
/// use dtask_core::{Files, IncomingFile};
///
/// let files = Files::from_files(vec![
///     IncomingFile::from_bytes("a.txt", "hello"),
///     IncomingFile::from_bytes("b.txt", "world"),
/// ]);
/// assert_eq!(files.total_size(), Some(10));
/// ```
#[derive(Default)]
pub struct Files {
    source: Mutex<Option<FileStream>>,
    total_size: Option<u64>,
}

impl Files {
    /// No files.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Files already at hand.
    pub fn from_files(files: Vec<IncomingFile>) -> Self {
        let total_size = files.iter().map(|f| f.size).sum();
        Self {
            source: Mutex::new(Some(stream::iter(files.into_iter().map(Ok)).boxed())),
            total_size,
        }
    }

    /// Files arriving one after the other (from a multipart body, say).
    pub fn from_stream(files: FileStream, total_size: Option<u64>) -> Self {
        Self {
            source: Mutex::new(Some(files)),
            total_size,
        }
    }

    /// Files on the local disk, opened one at a time as they are read.
    ///
    /// # Errors
    /// The I/O error of reading a file's metadata, naming the file.
    pub fn from_paths(paths: impl IntoIterator<Item = PathBuf>) -> std::io::Result<Self> {
        let mut entries = Vec::new();
        for path in paths {
            let meta = std::fs::metadata(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if !meta.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{}: not a regular file", path.display()),
                ));
            }
            entries.push((path, meta.len()));
        }
        let total_size = entries.iter().map(|(_, size)| size).sum();
        let files = stream::iter(entries)
            .then(|(path, size)| async move { open_local(&path, Some(size)).await })
            .boxed();
        Ok(Self::from_stream(files, Some(total_size)))
    }

    /// The total size of the files, when known in advance.
    pub fn total_size(&self) -> Option<u64> {
        self.total_size
    }

    /// Takes the stream of files out; a second call gets `None`.
    pub fn take(&self) -> Option<FileStream> {
        self.source.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Files")
            .field("total_size", &self.total_size)
            .finish_non_exhaustive()
    }
}

async fn open_local(path: &std::path::Path, size: Option<u64>) -> std::io::Result<IncomingFile> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let name = path
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    Ok(IncomingFile {
        name,
        content_type: None,
        size,
        body: ReaderStream::with_capacity(file, 64 * 1024).boxed(),
    })
}

/// One object written by an upload step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObject {
    /// Its key in the step's bucket.
    pub key: String,
    /// The file's name, sanitized and unique within the step.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The declared media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// The data of an upload step: the bucket and the objects it wrote, in the
/// order the files came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObjects {
    /// The bucket written to.
    pub bucket: String,
    /// The objects.
    pub objects: Vec<StoredObject>,
}

impl StoredObjects {
    /// The objects' total size.
    pub fn total_size(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// A file on this host's disk, produced by one step for a later one (the
/// archive CreateZipArchive writes for UploadZip to store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// The name to store it under.
    pub name: String,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// The data of a download step: the fetched files, in the order of the
/// source objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadedFiles {
    /// The files on local disk.
    pub files: Vec<LocalFile>,
}

/// What an upload step can take its files from.
pub trait UploadSource {
    /// The files to upload, opened lazily.
    fn open(&self) -> FileStream;

    /// Their total size, when known.
    fn total_size(&self) -> Option<u64> {
        None
    }

    /// Whether [`open`](Self::open) can be called again after a failed
    /// attempt (local files can; a request's streamed uploads cannot, so a
    /// failed upload of them is not retried).
    fn is_replayable(&self) -> bool {
        true
    }
}

impl UploadSource for Files {
    fn open(&self) -> FileStream {
        self.take().unwrap_or_else(|| {
            stream::once(async {
                Err(std::io::Error::other(
                    "the request's files were already consumed by an earlier attempt and cannot be read again",
                ))
            })
            .boxed()
        })
    }

    fn total_size(&self) -> Option<u64> {
        self.total_size
    }

    fn is_replayable(&self) -> bool {
        false
    }
}

impl UploadSource for LocalFile {
    fn open(&self) -> FileStream {
        std::slice::from_ref(self).open()
    }
}

impl UploadSource for [LocalFile] {
    fn open(&self) -> FileStream {
        let files = self.to_vec();
        stream::iter(files)
            .then(|file| async move {
                let size = tokio::fs::metadata(&file.path).await.ok().map(|m| m.len());
                let mut incoming = open_local(&file.path, size).await?;
                incoming.name = file.name;
                incoming.content_type = file.content_type;
                Ok(incoming)
            })
            .boxed()
    }
}

impl UploadSource for Vec<LocalFile> {
    fn open(&self) -> FileStream {
        self.as_slice().open()
    }
}

impl UploadSource for DownloadedFiles {
    fn open(&self) -> FileStream {
        self.files.open()
    }
}

/// Makes a client-supplied file name safe to use as a relative path inside
/// an archive or a directory.
///
/// Backslashes become separators; drive letters, leading slashes, empty,
/// `.` and `..` segments are dropped; control characters and `:` are
/// replaced; each segment keeps at most 255 bytes. What is left can never
/// escape the root it is joined to. An empty result becomes `file`.
///
/// ```
/// use dtask_core::files::safe_file_name;
///
/// assert_eq!(safe_file_name("../../etc/passwd"), "etc/passwd");
/// assert_eq!(safe_file_name(r"C:\Users\me\report.pdf"), "Users/me/report.pdf");
/// assert_eq!(safe_file_name("/abs/./x.txt"), "abs/x.txt");
/// assert_eq!(safe_file_name(".."), "file");
/// ```
pub fn safe_file_name(raw: &str) -> String {
    let unified = raw.replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for (index, segment) in unified.split('/').enumerate() {
        let segment = if index == 0 && is_drive_letter(segment) {
            ""
        } else {
            segment
        };
        let cleaned: String = segment
            .chars()
            .map(|c| if c.is_control() || c == ':' { '_' } else { c })
            .collect();
        let cleaned = cleaned.trim();
        if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
            continue;
        }
        segments.push(truncate_bytes(cleaned, 255).to_owned());
    }
    if segments.is_empty() {
        "file".to_owned()
    } else {
        segments.join("/")
    }
}

fn is_drive_letter(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    bytes.len() == 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Hands out names that stay distinct, ignoring case (so they stay distinct
/// on case-insensitive file systems too): the second `a.txt` becomes
/// `a (1).txt`.
///
/// ```
/// use dtask_core::files::UniqueNames;
///
/// let mut names = UniqueNames::default();
/// assert_eq!(names.claim("a.txt"), "a.txt");
/// assert_eq!(names.claim("A.TXT"), "A (1).TXT");
/// assert_eq!(names.claim("a.txt"), "a (2).txt");
/// ```
#[derive(Debug, Default)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl UniqueNames {
    /// `name` itself when free, otherwise `name` with ` (n)` before its
    /// extension for the smallest free `n`.
    pub fn claim(&mut self, name: &str) -> String {
        if self.taken.insert(name.to_lowercase()) {
            return name.to_owned();
        }
        let (stem, extension) = split_extension(name);
        (1..)
            .map(|n| format!("{stem} ({n}){extension}"))
            .find(|candidate| self.taken.insert(candidate.to_lowercase()))
            .unwrap_or_else(|| name.to_owned())
    }
}

fn split_extension(name: &str) -> (&str, &str) {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[file_start..].rfind('.') {
        Some(dot) if dot > 0 => name.split_at(file_start + dot),
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_inside_the_root() {
        let cases = [
            ("../../../etc/passwd", "etc/passwd"),
            ("/etc/shadow", "etc/shadow"),
            (r"..\..\windows\system32", "windows/system32"),
            ("C:/boot.ini", "boot.ini"),
            (r"D:\a\..\b.txt", "a/b.txt"),
            ("a/./b/../c", "a/b/c"),
            ("name\u{0}with\nnul", "name_with_nul"),
            ("x:y.txt", "x_y.txt"),
            ("", "file"),
            ("   ", "file"),
            ("./", "file"),
            ("résumé ✓.txt", "résumé ✓.txt"),
        ];
        for (raw, expected) in cases {
            let safe = safe_file_name(raw);
            assert_eq!(safe, expected, "for {raw:?}");
            assert!(!safe.starts_with('/'));
            assert!(safe.split('/').all(|s| s != ".." && s != "." && !s.is_empty()));
        }
    }

    #[test]
    fn long_segments_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let safe = safe_file_name(&long);
        assert!(safe.len() <= 255);
        assert!(safe.chars().all(|c| c == 'é'));
    }

    #[test]
    fn unique_names_handle_paths_and_dotfiles() {
        let mut names = UniqueNames::default();
        assert_eq!(names.claim("dir/a.tar.gz"), "dir/a.tar.gz");
        assert_eq!(names.claim("dir/a.tar.gz"), "dir/a.tar (1).gz");
        assert_eq!(names.claim(".env"), ".env");
        assert_eq!(names.claim(".env"), ".env (1)");
        assert_eq!(names.claim("v1.2/readme"), "v1.2/readme");
        assert_eq!(names.claim("v1.2/readme"), "v1.2/readme (1)");
    }
}
