//! What the `tls:` listeners' handshakes did, counted per listener like everything else
//! (relaxed atomics on the listener's own handle): handshakes completed, failures by
//! reason ([`HandshakeFailure`]), and client certificates checked ([`ClientCertCheck`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// The client did not finish within the handshake timeout.
    Timeout,
    /// The client spoke something else than TLS, or TLS the listener does not accept
    /// (no common version or cipher suite, a malformed message, an unexpected alert).
    Protocol,
    /// A certificate is required and the client sent none.
    NoClientCert,
    /// The client's certificate did not verify (unknown CA, bad signature, wrong usage).
    BadClientCert,
    /// The client's certificate is expired (or not valid yet).
    ExpiredClientCert,
    /// The client refused the listener's certificate (it does not trust it).
    ServerCertRefused,
    /// The client closed or reset the connection during the handshake.
    Closed,
    /// The host closed the connection (drain timeout at shutdown, an operator's close).
    Shutdown,
}

impl HandshakeFailure {
    /// Every reason, in the order of their counters.
    pub(crate) const ALL: [HandshakeFailure; 8] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Protocol,
        HandshakeFailure::NoClientCert,
        HandshakeFailure::BadClientCert,
        HandshakeFailure::ExpiredClientCert,
        HandshakeFailure::ServerCertRefused,
        HandshakeFailure::Closed,
        HandshakeFailure::Shutdown,
    ];

    /// The reason as a metric label and in the log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::NoClientCert => "no_client_cert",
            HandshakeFailure::BadClientCert => "bad_client_cert",
            HandshakeFailure::ExpiredClientCert => "expired_client_cert",
            HandshakeFailure::ServerCertRefused => "server_cert_refused",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Shutdown => "shutdown",
        }
    }

    /// Whether the client presented a certificate that failed verification.
    pub(crate) fn client_cert_failed(self) -> bool {
        matches!(self, HandshakeFailure::BadClientCert | HandshakeFailure::ExpiredClientCert)
    }
}

/// What became of a client certificate on a listener that asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientCertCheck {
    /// Presented and verified.
    Verified,
    /// Presented and refused (the handshake failed).
    Failed,
    /// None presented, and none required (`client-cert = "optional"`).
    Absent,
}

impl ClientCertCheck {
    /// Every result, in the order of their counters.
    pub(crate) const ALL: [ClientCertCheck; 3] = [ClientCertCheck::Verified, ClientCertCheck::Failed, ClientCertCheck::Absent];

    /// The result as a metric label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ClientCertCheck::Verified => "ok",
            ClientCertCheck::Failed => "failed",
            ClientCertCheck::Absent => "absent",
        }
    }
}

/// One listener's handshake counts.
#[derive(Debug, Default)]
pub(crate) struct Handshakes {
    completed: AtomicU64,
    failed: [AtomicU64; HandshakeFailure::ALL.len()],
    client_certs: [AtomicU64; ClientCertCheck::ALL.len()],
}

/// A point-in-time copy of [`Handshakes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HandshakesSnapshot {
    /// Handshakes completed.
    pub(crate) completed: u64,
    /// `(reason, count)` for every [`HandshakeFailure`].
    pub(crate) failed: Vec<(&'static str, u64)>,
    /// `(result, count)` for every [`ClientCertCheck`].
    pub(crate) client_certs: Vec<(&'static str, u64)>,
}

impl Handshakes {
    /// Counts a completed handshake, and its client certificate's check if there was one.
    pub(crate) fn completed(&self, client_cert: Option<ClientCertCheck>) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(check) = client_cert {
            self.client_certs[check as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed handshake.
    pub(crate) fn failed(&self, why: HandshakeFailure) {
        self.failed[why as usize].fetch_add(1, Ordering::Relaxed);
        if why.client_cert_failed() {
            self.client_certs[ClientCertCheck::Failed as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> HandshakesSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HandshakesSnapshot {
            completed: get(&self.completed),
            failed: HandshakeFailure::ALL.iter().map(|f| (f.name(), get(&self.failed[*f as usize]))).collect(),
            client_certs: ClientCertCheck::ALL.iter().map(|c| (c.name(), get(&self.client_certs[*c as usize]))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_client_certificates_are_counted_by_reason() {
        let counts = Handshakes::default();
        counts.completed(None);
        counts.completed(Some(ClientCertCheck::Verified));
        counts.failed(HandshakeFailure::ExpiredClientCert);
        counts.failed(HandshakeFailure::Timeout);
        let s = counts.snapshot();
        assert_eq!(s.completed, 2);
        assert!(s.failed.contains(&("expired_client_cert", 1)) && s.failed.contains(&("timeout", 1)), "{s:?}");
        assert!(s.client_certs.contains(&("ok", 1)) && s.client_certs.contains(&("failed", 1)), "{s:?}");
        assert!(HandshakeFailure::ALL.iter().enumerate().all(|(i, f)| *f as usize == i));
        assert!(ClientCertCheck::ALL.iter().enumerate().all(|(i, c)| *c as usize == i));
    }
}
