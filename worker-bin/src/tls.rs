//! TLS without OpenSSL (rustls, with ring), with libpq's `sslmode` and `sslrootcert`.
//!
//! tokio-postgres knows `sslmode` disable / prefer / require only, and no `sslrootcert`, so both are
//! taken out of the connection string here (or read from `PGSSLMODE` / `PGSSLROOTCERT`) and turned
//! into a rustls configuration, as libpq would use them:
//! - `disable`: no TLS; `allow` / `prefer` (libpq's default): TLS if the server offers it;
//!   `require`: TLS or no connection. None of these checks the server's certificate — unless a root
//!   certificate is given (or `~/.postgresql/root.crt` exists), when `require` checks it as `verify-ca`.
//! - `verify-ca`: the certificate must be signed by the root certificate; `verify-full`: and name the
//!   host connected to. Both need the root certificate file.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode as WireMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode \"{other}\": use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    /// What tokio-postgres negotiates: whether TLS is tried, and whether it is required.
    pub fn wire(self) -> WireMode {
        match self {
            SslMode::Disable => WireMode::Disable,
            SslMode::Allow | SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }
}

/// The TLS half of the connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// The CA certificate(s) the server's certificate must chain to (PEM).
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a connection string (`key=value ...` or a URI's query);
/// the rest of the string, and the two values if present.
pub fn extract(dsn: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    let rest = if dsn.starts_with("postgresql://") || dsn.starts_with("postgres://") {
        match dsn.split_once('?') {
            None => dsn.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, percent_decode(value)?) {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_values(dsn)? {
            if !take(&key, value.clone()) {
                kept.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// `key = value` pairs of a libpq keyword/value string; values may be single-quoted with `\'` and
/// `\\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "invalid connection string: missing \"=\" after \"{key}\""
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(format!(
                            "invalid connection string: unterminated quoted value of \"{key}\""
                        ))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("invalid percent-encoding in \"{s}\""))?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("invalid percent-encoding in \"{s}\""))?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("invalid UTF-8 in \"{s}\""))
}

/// The options, from what the connection string said, else the environment, else libpq's defaults
/// (`prefer`; `~/.postgresql/root.crt` when it exists).
pub fn options(
    mode: Option<String>,
    root: Option<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<TlsOptions, String> {
    let mode = SslMode::parse(
        &mode
            .or_else(|| env("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".into()),
    )?;
    let root_cert = root
        .or_else(|| env("PGSSLROOTCERT"))
        .map(PathBuf::from)
        .or_else(|| {
            let default = PathBuf::from(env("HOME")?).join(".postgresql/root.crt");
            default.exists().then_some(default)
        });
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
        return Err(format!(
            "sslmode={} needs the root certificate that signed the server's: set sslrootcert=<file> (or PGSSLROOTCERT), or put it in ~/.postgresql/root.crt",
            if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
        ));
    }
    Ok(TlsOptions { mode, root_cert })
}

/// The connector for tokio-postgres.
pub fn connector(options: &TlsOptions) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&options.root_cert, options.mode) {
        (None, _) => Arc::new(Unverified(provider)),
        (Some(file), mode) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    file.display()
                ));
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` / `require` without a root certificate: encrypted, but the certificate is not checked
/// (libpq's behaviour). The handshake's signatures still are.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.0.verify_server_cert(end, chain, name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether a connection error is the server's certificate being refused (retrying cannot help).
pub fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if matches!(
            s.downcast_ref::<Error>(),
            Some(Error::InvalidCertificate(_))
        ) {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| {
                matches!(
                    inner.downcast_ref::<Error>(),
                    Some(Error::InvalidCertificate(_))
                )
            }) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_are_taken_out_of_keyword_strings() {
        let (rest, mode, root) = extract(
            "host=db sslmode=verify-full  sslrootcert = '/etc/ca dir/ca.pem' password='it\\'s'",
        )
        .unwrap();
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca dir/ca.pem"));
        assert_eq!(rest, "host='db' password='it\\'s'");
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"it's"[..]));
    }

    #[test]
    fn ssl_settings_are_taken_out_of_uris() {
        let (rest, mode, root) = extract("postgresql://w@db:5432/app?sslmode=verify-ca&application_name=x&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(
            (mode.as_deref(), root.as_deref()),
            (Some("verify-ca"), Some("/tmp/ca.pem"))
        );
        assert_eq!(rest, "postgresql://w@db:5432/app?application_name=x");
        assert_eq!(
            extract("postgres://db/app?sslmode=require").unwrap().0,
            "postgres://db/app"
        );
    }

    #[test]
    fn modes_follow_libpq() {
        let none = |_: &str| None;
        assert_eq!(options(None, None, &none).unwrap().mode, SslMode::Prefer);
        assert_eq!(
            options(None, None, &|k: &str| (k == "PGSSLMODE")
                .then(|| "require".into()))
            .unwrap()
            .mode,
            SslMode::Require
        );
        assert_eq!(
            options(Some("disable".into()), None, &|_: &str| Some(
                "require".into()
            ))
            .unwrap()
            .mode,
            SslMode::Disable
        );
        assert!(options(Some("verify-full".into()), None, &none)
            .unwrap_err()
            .contains("sslrootcert"));
        assert!(options(Some("bogus".into()), None, &none)
            .unwrap_err()
            .contains("invalid sslmode"));
        assert_eq!(SslMode::VerifyCa.wire(), WireMode::Require);
        assert_eq!(SslMode::Allow.wire(), WireMode::Prefer);
    }

    #[test]
    fn bad_strings_are_reported() {
        assert!(extract("host").unwrap_err().contains("missing \"=\""));
        assert!(extract("password='open")
            .unwrap_err()
            .contains("unterminated"));
    }
}
