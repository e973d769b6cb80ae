//! Body wrappers of a guarded connection: request bodies with a deadline, and response bodies
//! that report when they are done (the connection is then idle again).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::guard::ConnState;
use super::limits::HttpClose;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that must arrive completely within a deadline. When it does not, the body
/// fails, the connection is marked to close after the answer, and the stall is counted.
pub(crate) struct TimedBody<B> {
    inner: B,
    deadline: Instant,
    /// Created the first time the body makes us wait.
    sleep: Option<Pin<Box<Sleep>>>,
    state: Arc<ConnState>,
    expired: bool,
}

impl<B> TimedBody<B> {
    pub(crate) fn new(inner: B, within: Duration, state: Arc<ConnState>) -> Self {
        TimedBody {
            inner,
            deadline: Instant::now() + within,
            sleep: None,
            state,
            expired: false,
        }
    }
}

impl<B> Drop for TimedBody<B> {
    fn drop(&mut self) {
        self.state.on_body_progress();
    }
}

/// The error of a request body that missed its deadline.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the body timeout")]
pub(crate) struct BodyTimeout;

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.state.on_body_progress();
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
            Poll::Pending => this.state.on_body_wait(),
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.expired = true;
                this.state.close_after_response();
                this.state.counters().closed(HttpClose::BodyTimeout);
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection state when it is finished or dropped.
pub(crate) struct TrackedBody<B> {
    inner: B,
    state: Option<Arc<ConnState>>,
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, state: Arc<ConnState>) -> Self {
        TrackedBody {
            inner,
            state: Some(state),
        }
    }

    fn finish(&mut self) {
        if let Some(state) = self.state.take() {
            state.on_response_done();
        }
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(poll, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
