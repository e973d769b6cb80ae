//! The `[clients]` settings: limits of client sessions (connections without a certificate,
//! authenticated by their token alone; `docs/PROTOCOL.md` "Client sessions").

use overlay_proto::ClientLimits;

use super::{spec, DaemonConfigError, Resolver};

impl Resolver<'_> {
    /// `[clients]` into the core's [`ClientLimits`].
    pub(super) fn client_limits(&self, c: &mut ClientLimits) -> Result<(), DaemonConfigError> {
        let f = &self.file.clients;
        c.max_clients = self.usize_in(
            &spec("max_clients", None, None, "clients.max_clients"),
            None,
            f.max_clients,
            c.max_clients,
            0,
            10_000_000,
        )?;
        c.rate_per_s = self.u32_in(
            &spec("rate_per_s", None, None, "clients.rate_per_s"),
            f.rate_per_s,
            c.rate_per_s,
            1,
            100_000_000,
        )?;
        c.rate_burst = self.u32_in(
            &spec("rate_burst", None, None, "clients.rate_burst"),
            f.rate_burst,
            c.rate_burst,
            1,
            100_000_000,
        )?;
        c.window_frames = self.u32_in(
            &spec("window_frames", None, None, "clients.window_frames"),
            f.window_frames,
            c.window_frames,
            2,
            1 << 20,
        )?;
        c.window_bytes = self.u32_in(
            &spec("window_bytes", None, None, "clients.window_bytes"),
            f.window_bytes,
            c.window_bytes,
            1 << 20,
            1 << 30,
        )?;
        c.queue_frames = self.usize_in(
            &spec("queue_frames", None, None, "clients.queue_frames"),
            None,
            f.queue_frames,
            c.queue_frames,
            1,
            1 << 20,
        )?;
        c.queue_bytes = self.usize_in(
            &spec("queue_bytes", None, None, "clients.queue_bytes"),
            None,
            f.queue_bytes,
            c.queue_bytes,
            1 << 20,
            1 << 30,
        )?;
        c.max_buffered_bytes = self.usize_in(
            &spec(
                "max_buffered_bytes",
                None,
                None,
                "clients.max_buffered_bytes",
            ),
            None,
            f.max_buffered_bytes,
            c.max_buffered_bytes,
            1 << 20,
            1 << 40,
        )?;
        c.idle_timeout = self.ms(
            &spec("idle_ms", None, None, "clients.idle_ms"),
            None,
            f.idle_ms,
            c.idle_timeout,
        )?;
        Ok(())
    }
}
