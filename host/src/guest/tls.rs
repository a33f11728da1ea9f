//! The host side of `switchboard:plugin/tls`: what an instance may learn about the TLS
//! session its connection arrived over. The listener fills a [`TlsSession`] in once the
//! handshake is done; the instance's state holds it and `session()` hands a copy out.

use wasmtime::component::HasData;

use super::bindings::switchboard::plugin::tls::{Host, PeerCertificate, TlsSession};

/// The `tls` interface's view of one instance: its connection's session, if any.
pub(crate) struct TlsView<'a>(pub(crate) Option<&'a TlsSession>);

impl Host for TlsView<'_> {
    fn session(&mut self) -> wasmtime::Result<Option<TlsSession>> {
        Ok(self.0.cloned())
    }
}

/// Names [`TlsView`] as the data the `tls` bindings are added to the linker with.
pub(crate) struct TlsAccess;

impl HasData for TlsAccess {
    type Data<'a> = TlsView<'a>;
}

/// A verified client certificate as the plugin sees it: `der` is the leaf, `sha256` its
/// fingerprint (lowercase hex). A subject or SAN the parser cannot read is left out
/// rather than failing the connection: the certificate itself already verified.
pub(crate) fn peer_certificate(der: &[u8], sha256: String) -> PeerCertificate {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;

    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return PeerCertificate { subject: String::new(), sans: Vec::new(), sha256 };
    };
    let subject = cert.tbs_certificate.subject.to_string();
    let sans = match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, SubjectAltName(names)))) => names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DnsName(dns) => Some(format!("DNS:{}", dns.as_str())),
                GeneralName::Rfc822Name(email) => Some(format!("email:{}", email.as_str())),
                GeneralName::UniformResourceIdentifier(uri) => Some(format!("URI:{}", uri.as_str())),
                GeneralName::IpAddress(ip) => ip_text(ip.as_bytes()).map(|ip| format!("IP:{ip}")),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    PeerCertificate { subject, sans, sha256 }
}

/// An IPv4 or IPv6 address from a SAN's octets.
fn ip_text(octets: &[u8]) -> Option<String> {
    match octets.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(octets).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_panic_and_keeps_the_fingerprint() {
        let cert = peer_certificate(b"\x30\x03\x02\x01", "ab".into());
        assert_eq!((cert.subject.as_str(), cert.sans.len(), cert.sha256.as_str()), ("", 0, "ab"));
    }

    #[test]
    fn sans_addresses() {
        assert_eq!(ip_text(&[127, 0, 0, 1]).as_deref(), Some("127.0.0.1"));
        assert_eq!(ip_text(&[0; 16]).as_deref(), Some("::"));
        assert_eq!(ip_text(&[1, 2, 3]), None);
    }
}
