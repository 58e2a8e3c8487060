//! Bounded channels that turn multipart parts into the streams a task's
//! upload step reads, and that never end cleanly by accident.
//!
//! A receiver stream ends normally only when its sender said so
//! ([`Msg::End`]); a sender dropped early (the request was abandoned, the
//! handler stopped) makes the stream yield an error instead, so a cut
//! upload can never be stored as if it were complete.

use std::io;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::mpsc;

/// One message on a guarded channel.
pub(crate) enum Msg<T> {
    /// The next item (or the error that ends the stream).
    Item(io::Result<T>),
    /// The stream is complete.
    End,
}

/// A bounded channel of `capacity` and the stream that reads it.
pub(crate) fn guarded<T: Send + 'static>(capacity: usize) -> (mpsc::Sender<Msg<T>>, BoxStream<'static, io::Result<T>>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let stream = stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Some(Msg::Item(Ok(item))) => Some((Ok(item), Some(receiver))),
            Some(Msg::Item(Err(error))) => Some((Err(error), None)),
            Some(Msg::End) => None,
            None => Some((
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upload was interrupted",
                )),
                None,
            )),
        }
    })
    .boxed();
    (sender, stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_sender_is_an_error_and_end_is_not() {
        let (sender, stream) = guarded::<u8>(4);
        sender.send(Msg::Item(Ok(1))).await.unwrap();
        sender.send(Msg::End).await.unwrap();
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 1);
        assert_eq!(*items[0].as_ref().unwrap(), 1);

        let (sender, stream) = guarded::<u8>(4);
        sender.send(Msg::Item(Ok(1))).await.unwrap();
        drop(sender);
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
