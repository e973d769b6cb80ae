//! The application side of message validation (`NodeConfig::validation = App`): the core holds
//! each new message and asks for a verdict (`Action::Validate`); the node task hands it here as
//! a [`PendingValidation`], and the application's answer goes back as `Input::Verdict`. The
//! core keeps the bookkeeping (bound, deadline, penalties, counters): a message that is never
//! answered (dropped, or left in a full queue) is ignored at `validation_timeout`, counted.

use overlay_proto::OverlayError;
use std::fmt;

use overlay_proto::{Delivery, Verdict};
use tokio::sync::mpsc;

use super::Error;
use crate::runtime::node_task::Command;

/// The stream of messages waiting for the application's verdict ([`Overlay::validator`]).
///
/// [`Overlay::validator`]: super::Overlay::validator
pub struct Validator {
    /// Boxed: the queue allocates its slots in blocks of 32 (on every node, validating or
    /// not), each as large as one item.
    pub(super) rx: mpsc::Receiver<Box<PendingValidation>>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// The next message to judge, or `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<PendingValidation> {
        self.rx.recv().await.map(|pending| *pending)
    }
}

/// One message held by the node until the application decides. Dropping it without a verdict
/// leaves the message to its deadline (then it is ignored).
pub struct PendingValidation {
    pub(crate) id: u64,
    pub(crate) delivery: Delivery,
    pub(crate) cmd: mpsc::WeakSender<Command>,
}

impl fmt::Debug for PendingValidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingValidation")
            .field("id", &self.id)
            .field("message", &self.delivery.id)
            .finish_non_exhaustive()
    }
}

impl PendingValidation {
    /// The message, as it will be delivered if accepted.
    pub fn message(&self) -> &Delivery {
        &self.delivery
    }

    /// Valid: the node stores, forwards and delivers it.
    pub async fn accept(self) -> Result<(), Error> {
        self.verdict(Verdict::Accept).await
    }

    /// Invalid: the node drops it and penalizes the neighbour that sent it.
    pub async fn reject(self) -> Result<(), Error> {
        self.verdict(Verdict::Reject).await
    }

    /// Not for us: the node drops it without a penalty.
    pub async fn ignore(self) -> Result<(), Error> {
        self.verdict(Verdict::Ignore).await
    }

    /// Sends `verdict` to the node ([`OverlayError::ShuttingDown`] once it has stopped). A
    /// verdict after the deadline has no effect (counted by the core).
    pub async fn verdict(self, verdict: Verdict) -> Result<(), Error> {
        let cmd = self
            .cmd
            .upgrade()
            .ok_or(Error::Overlay(OverlayError::ShuttingDown))?;
        cmd.send(Command::Verdict {
            id: self.id,
            verdict,
        })
        .await
        .map_err(|_| Error::Overlay(OverlayError::ShuttingDown))
    }
}
