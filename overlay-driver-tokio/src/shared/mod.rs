//! State shared between the driver's tasks, kept small and lock-free so the `loom_overlay`
//! test can model-check it (`RUSTFLAGS="--cfg loom" cargo test -p overlay-driver-tokio --test
//! loom_overlay`):
//!
//! - [`ConnRegistry`]: open TCP connections, admitted against `max_conns`;
//! - [`WriteCredit`]: the byte budget of one connection's bounded writer queue;
//! - [`StopSignal`]: the shutdown signal the node task gives the accept loop;
//! - [`ReadyFlag`]: readiness, with shutting-down as a terminal state.
//!
//! Everything here goes through [`crate::sync`]; nothing holds a lock.

mod conns;
mod credit;
mod ready;
mod stop;

pub use conns::{ConnRegistry, ConnSlot};
pub use credit::WriteCredit;
pub use ready::{ReadyFlag, ReadyState};
pub use stop::StopSignal;
