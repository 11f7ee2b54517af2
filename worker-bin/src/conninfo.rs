//! Connection settings the way libpq users expect them: a connection string (`key=value ...` or a
//! `postgresql://` URI), with anything it leaves out taken from the PG* environment variables, then
//! libpq's defaults. tokio-postgres reads no environment itself, so this does.

use crate::tls::TlsOptions;
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// libpq's default socket directory on Debian-built PostgreSQL.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection settings and their TLS half (see tls.rs).
pub fn build(
    dsn: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Config, TlsOptions), String> {
    let (rest, ssl_mode, root_cert) = match dsn {
        Some(s) if !s.trim().is_empty() => crate::tls::extract(s)?,
        _ => (String::new(), None, None),
    };
    let tls = crate::tls::options(ssl_mode, root_cert, &env)?;
    let mut config: Config = match rest.trim() {
        "" => Config::new(),
        s => s
            .parse()
            .map_err(|e| format!("invalid connection string: {e}"))?,
    };
    config.ssl_mode(tls.mode.wire());
    if config.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_string());
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            config.host(host);
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT") {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("invalid PGPORT \"{port}\""))?;
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".to_string());
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        let db = env("PGDATABASE")
            .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_string());
        config.dbname(&db);
    }
    if config.get_password().is_none() {
        if let Some(pw) = env("PGPASSWORD") {
            config.password(pw);
        }
    }
    if config.get_application_name().is_none() {
        config
            .application_name(&env("PGAPPNAME").unwrap_or_else(|| "pg_trickle_worker".to_string()));
    }
    if config.get_connect_timeout().is_none() {
        let timeout = match env("PGCONNECT_TIMEOUT") {
            Some(s) => Duration::from_secs(
                s.parse()
                    .map_err(|_| format!("invalid PGCONNECT_TIMEOUT \"{s}\""))?,
            ),
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        config.connect_timeout(timeout);
    }
    Ok((config, tls))
}

/// Where we are connecting, for messages (never includes the password).
pub fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(|p| p.to_string()).collect();
    format!(
        "host={} port={} dbname={} user={}",
        hosts.join(","),
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("?"),
        config.get_user().unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_fills_what_the_string_leaves_out() {
        let env = env_of(&[
            ("PGHOST", "db.example"),
            ("PGPORT", "6543"),
            ("PGUSER", "alice"),
            ("PGDATABASE", "shop"),
        ]);
        let (c, _) = build(Some("dbname=analytics"), env).unwrap();
        assert_eq!(
            describe(&c),
            "host=db.example port=6543 dbname=analytics user=alice"
        );
        assert_eq!(c.get_application_name(), Some("pg_trickle_worker"));
    }

    #[test]
    fn uri_settings_win_over_the_environment() {
        let env = env_of(&[("PGHOST", "ignored"), ("PGUSER", "ignored")]);
        let (c, _) = build(Some("postgresql://bob@127.0.0.1:28815/demo"), env).unwrap();
        assert_eq!(
            describe(&c),
            "host=127.0.0.1 port=28815 dbname=demo user=bob"
        );
    }

    #[test]
    fn defaults_are_libpq_like() {
        let (c, tls) = build(None, env_of(&[("USER", "carol")])).unwrap();
        assert_eq!(tls.mode, crate::tls::SslMode::Prefer);
        assert_eq!(
            describe(&c),
            "host=/var/run/postgresql port=5432 dbname=carol user=carol"
        );
        assert_eq!(c.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
    }

    #[test]
    fn bad_values_are_reported() {
        assert!(build(Some("port=notanumber"), env_of(&[]))
            .unwrap_err()
            .contains("invalid connection string"));
        assert!(build(None, env_of(&[("PGPORT", "x")]))
            .unwrap_err()
            .contains("PGPORT"));
    }
}
