//! librdkafka properties a user gives pantau: `--kafka-config FILE` (kcat's `-F`), then
//! `-X key=value` (kcat's `-X`), then `PANTAU_KAFKA_SASL_USERNAME`/`_PASSWORD`. A value
//! may name where a secret is (`env:NAME`, `file:PATH`) instead of holding it. Secret
//! values are never printed: not by `Debug`, not in an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rdkafka::config::{ClientConfig, FromClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use crate::error::{Error, Result};

/// Environment variables that fill `sasl.username` and `sasl.password` when neither the
/// properties file nor `-X` sets them (the compose file's way to pass them).
pub(crate) const USERNAME_ENV: &str = "PANTAU_KAFKA_SASL_USERNAME";
pub(crate) const PASSWORD_ENV: &str = "PANTAU_KAFKA_SASL_PASSWORD";

/// Properties pantau sets itself because its guarantees depend on them, each with what
/// to do instead. A user setting one is refused: an `enable.auto.commit=true` would
/// commit offsets of records whose alerts were never written.
pub(crate) const REFUSED: [(&str, &str); 13] = [
    ("bootstrap.servers", "give the brokers with --brokers"),
    ("metadata.broker.list", "give the brokers with --brokers"),
    ("group.id", "name the consumer group with --group"),
    (
        "enable.auto.commit",
        "pantau commits offsets itself, only after the alerts of the records are written",
    ),
    (
        "enable.auto.offset.store",
        "pantau commits offsets itself, only after the alerts of the records are written",
    ),
    (
        "isolation.level",
        "pantau reads only committed records (read_committed)",
    ),
    (
        "auto.offset.reset",
        "pantau reads a new group's topics from their beginning",
    ),
    (
        "enable.partition.eof",
        "pantau decides per client whether it needs end-of-partition events",
    ),
    ("transactional.id", "use pantau run --transactional"),
    (
        "enable.idempotence",
        "pantau's producers are always idempotent",
    ),
    (
        "message.timeout.ms",
        "pantau's producers wait for the broker without a limit, so no alert is dropped",
    ),
    ("session.timeout.ms", "use --session-timeout"),
    (
        "statistics.interval.ms",
        "pantau sets it for pantau_consumer_lag_records",
    ),
];

/// Properties whose values are secrets: never shown.
pub(crate) fn is_secret(key: &str) -> bool {
    [
        "password",
        "secret",
        "passphrase",
        "key.pem",
        "oauthbearer.config",
        "token",
    ]
    .iter()
    .any(|part| key.contains(part))
}

/// One `-X key=value` as given: the value may still be an `env:` or `file:` reference.
#[derive(Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, shown(&self.key, &self.value))
    }
}

/// What of `value` may be printed: all of it, unless `key` holds a secret and `value`
/// is the secret itself rather than where to find it.
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) && !value.starts_with("env:") && !value.starts_with("file:") {
        "<redacted>"
    } else {
        value
    }
}

impl Property {
    /// Parses `key=value` (clap's value parser for `-X`).
    pub fn parse(text: &str) -> Result<Property, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| "expected KEY=VALUE, e.g. security.protocol=SASL_SSL".to_string())?;
        let key = key.trim();
        if key.is_empty() {
            return Err("the property name before '=' is empty".into());
        }
        Ok(Property {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// The reason a user may not set this property, if they may not.
    pub fn refusal(&self) -> Option<String> {
        REFUSED
            .iter()
            .find(|(key, _)| *key == self.key)
            .map(|(key, instead)| format!("{key} may not be set: {instead}"))
    }

    /// Whether librdkafka knows this property and accepts its value on its own; what
    /// depends on other properties (a mechanism's credentials) is judged by
    /// [`ClientSettings::validate`].
    pub fn check_alone(&self) -> Result<()> {
        let mut config = ClientConfig::new();
        config.set(self.key.clone(), self.resolve()?);
        config
            .create_native_config()
            .map(drop)
            .map_err(|e| describe(e, &config))
    }

    /// The value with `env:NAME` and `file:PATH` read.
    fn resolve(&self) -> Result<String> {
        if let Some(name) = self.value.strip_prefix("env:") {
            std::env::var(name).map_err(|_| Error::SecretUnset {
                key: self.key.clone(),
                name: name.to_string(),
            })
        } else if let Some(path) = self.value.strip_prefix("file:") {
            let text = std::fs::read_to_string(path).map_err(|source| Error::SecretFile {
                key: self.key.clone(),
                path: path.to_string(),
                source,
            })?;
            // A file written by `echo` or an editor ends in a newline that is not part of
            // the secret.
            Ok(text.trim_end_matches(['\n', '\r']).to_string())
        } else {
            Ok(self.value.clone())
        }
    }
}

/// A librdkafka properties file: `key=value` lines, `#` comments, blank lines.
pub(crate) fn read_properties_file(path: &Path) -> Result<Vec<Property>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::PropertiesFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_properties(&text).map_err(|(line, problem)| Error::PropertiesLine {
        path: path.to_path_buf(),
        line,
        problem,
    })
}

fn parse_properties(text: &str) -> Result<Vec<Property>, (usize, String)> {
    let mut properties = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        properties.push(Property::parse(line).map_err(|e| (i + 1, e))?);
    }
    Ok(properties)
}

/// The librdkafka settings of every client pantau makes against one cluster.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Properties for every client (consumers, producers, admin); they override the
    /// file's. A value `env:NAME` or `file:PATH` is a secret read when resolved.
    pub properties: Vec<Property>,
    /// A properties file (`key=value` lines, `#` comments), read first.
    pub kafka_config: Option<PathBuf>,
}

impl ClientSettings {
    /// The properties in force, secrets read: the file's, then -X's (the later wins),
    /// then the SASL environment variables for what is still unset. A refused property
    /// or an unreadable secret is an error naming the property.
    pub fn resolve(&self) -> Result<BTreeMap<String, String>> {
        let mut given = match &self.kafka_config {
            Some(path) => read_properties_file(path)?,
            None => Vec::new(),
        };
        given.extend(self.properties.iter().cloned());
        let mut resolved = BTreeMap::new();
        for property in &given {
            if let Some(refusal) = property.refusal() {
                return Err(Error::PropertyRefused(refusal));
            }
            resolved.insert(property.key.clone(), property.resolve()?);
        }
        for (key, env) in [
            ("sasl.username", USERNAME_ENV),
            ("sasl.password", PASSWORD_ENV),
        ] {
            if let (false, Ok(value)) = (resolved.contains_key(key), std::env::var(env)) {
                resolved.insert(key.to_string(), value);
            }
        }
        Ok(resolved)
    }

    /// Checks the properties the way librdkafka will when a client is made, without
    /// connecting to anything: an unknown name, a bad value, a mechanism it was built
    /// without or a certificate file it cannot load fails with its message naming it.
    pub fn validate(&self) -> Result<()> {
        // Without bootstrap.servers a client connects to nothing.
        create::<rdkafka::producer::BaseProducer>(&self.client_config()?).map(drop)
    }

    /// The client configuration these settings make, brokers aside.
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        for (key, value) in self.resolve()? {
            config.set(key, value);
        }
        // librdkafka's own log lines go through its logger; errors only by default.
        config.set_default("log_level", "3");
        Ok(config)
    }
}

/// Settings pantau chooses for its clients that a user may still override with -X.
pub(crate) trait SetDefault {
    fn set_default(&mut self, key: &str, value: &str) -> &mut Self;
}

impl SetDefault for ClientConfig {
    fn set_default(&mut self, key: &str, value: &str) -> &mut Self {
        if self.get(key).is_none() {
            self.set(key, value);
        }
        self
    }
}

/// Makes a client; librdkafka's refusal of a setting names the property, and shows its
/// value only when that is not a secret (rdkafka's own message always shows it).
pub fn create<T: FromClientConfig>(config: &ClientConfig) -> Result<T> {
    config.create().map_err(|e| describe(e, config))
}

/// As [`create`], with a context.
pub(crate) fn create_with<C: ClientContext, T: FromClientConfigAndContext<C>>(
    config: &ClientConfig,
    context: C,
) -> Result<T> {
    config
        .create_with_context(context)
        .map_err(|e| describe(e, config))
}

fn describe(error: KafkaError, config: &ClientConfig) -> Error {
    match error {
        KafkaError::ClientConfig(_, description, key, value) => {
            let description = if is_secret(&key) && !value.is_empty() {
                description.replace(&value, "<redacted>")
            } else {
                description
            };
            Error::Setting(format!(
                "Kafka setting {key}={}: {description}",
                shown(&key, &value)
            ))
        }
        other => {
            // librdkafka's creation errors (a CA file it cannot load, a mechanism it was
            // built without) quote paths and names, not values; secrets are scrubbed
            // anyway in case a future version quotes one.
            let mut text = other.to_string();
            for (key, value) in config.config_map() {
                if is_secret(key) && !value.is_empty() {
                    text = text.replace(&value.to_string(), "<redacted>");
                }
            }
            Error::Setting(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property(text: &str) -> Property {
        Property::parse(text).unwrap()
    }

    #[test]
    fn dash_x_overrides_the_properties_file_and_the_file_fills_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# the bank's cluster\nsecurity.protocol=SASL_SSL\n\nsasl.mechanism = SCRAM-SHA-512\n",
        )
        .unwrap();
        let settings = ClientSettings {
            properties: vec![property("sasl.mechanism=SCRAM-SHA-256")],
            kafka_config: Some(file),
        };
        let resolved = settings.resolve().unwrap();
        assert_eq!(resolved["security.protocol"], "SASL_SSL");
        assert_eq!(resolved["sasl.mechanism"], "SCRAM-SHA-256");
    }

    #[test]
    fn a_property_pantau_sets_itself_is_refused_with_what_to_do_instead() {
        let settings = ClientSettings {
            properties: vec![property("enable.auto.commit=true")],
            kafka_config: None,
        };
        let error = settings.resolve().unwrap_err().to_string();
        assert!(
            error.contains("enable.auto.commit may not be set"),
            "{error}"
        );
        assert!(error.contains("only after the alerts"), "{error}");
    }

    #[test]
    fn a_secret_is_read_from_the_environment_or_a_file_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("key-password");
        std::fs::write(&secret_file, "file-held-secret\n").unwrap();
        // The variable's name is this test's own: tests run in parallel in one process.
        std::env::set_var("PANTAU_TEST_SASL_PASSWORD_A1", "env-held-secret");
        let settings = ClientSettings {
            properties: vec![
                property("sasl.password=env:PANTAU_TEST_SASL_PASSWORD_A1"),
                property(&format!("ssl.key.password=file:{}", secret_file.display())),
                property("sasl.oauthbearer.client.secret=written-out"),
            ],
            kafka_config: None,
        };
        let resolved = settings.resolve().unwrap();
        assert_eq!(resolved["sasl.password"], "env-held-secret");
        assert_eq!(resolved["ssl.key.password"], "file-held-secret");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("written-out"), "{shown}");
        assert!(
            shown.contains("env:PANTAU_TEST_SASL_PASSWORD_A1"),
            "{shown}"
        );

        let missing = ClientSettings {
            properties: vec![property("sasl.password=env:PANTAU_TEST_NEVER_SET_B2")],
            kafka_config: None,
        };
        let error = missing.resolve().unwrap_err().to_string();
        assert!(
            error.contains("PANTAU_TEST_NEVER_SET_B2 is not set"),
            "{error}"
        );
    }

    #[test]
    fn librdkafka_names_a_wrong_setting_without_showing_a_secret() {
        let unknown = ClientSettings {
            properties: vec![property("ssl.ca.locaton=/tmp/ca.pem")],
            kafka_config: None,
        };
        let error = format!("{:#}", unknown.validate().unwrap_err());
        assert!(error.contains("ssl.ca.locaton"), "{error}");
        let bad_mechanism = ClientSettings {
            properties: vec![
                property("security.protocol=SASL_PLAINTEXT"),
                property("sasl.mechanism=SCRAM-SHA-1024"),
                property("sasl.username=pantau"),
                property("sasl.password=hunter2-secret"),
            ],
            kafka_config: None,
        };
        let error = format!("{:#}", bad_mechanism.validate().unwrap_err());
        assert!(error.contains("SCRAM-SHA-1024"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_refused_property_or_a_missing_secret_stops_rather_than_retries() {
        use pantau_core::error::{Recoverable, Recovery};
        let refused = ClientSettings {
            properties: vec![property("enable.auto.commit=true")],
            kafka_config: None,
        };
        assert_eq!(refused.resolve().unwrap_err().recovery(), Recovery::Stop);
        let missing = ClientSettings {
            properties: vec![property("sasl.password=file:/nowhere/pantau-secret")],
            kafka_config: None,
        };
        let error = missing.resolve().unwrap_err();
        assert_eq!(error.recovery(), Recovery::Stop);
        assert_eq!(
            error.to_string(),
            "sasl.password: cannot read /nowhere/pantau-secret"
        );
        let unknown = ClientSettings {
            properties: vec![property("ssl.ca.locaton=/tmp/ca.pem")],
            kafka_config: None,
        };
        assert_eq!(unknown.validate().unwrap_err().recovery(), Recovery::Stop);
    }

    #[test]
    fn a_properties_file_line_without_equals_is_named_by_its_line() {
        let error = parse_properties("security.protocol=SSL\nssl.ca.location\n").unwrap_err();
        assert_eq!(error.0, 2);
    }

    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_every_compression() {
        let features = crate::builtin_features().unwrap();
        for wanted in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "sasl_gssapi",
            "oidc",
            "zstd",
            "lz4",
            "snappy",
            "gzip",
        ] {
            assert!(
                features.iter().any(|f| f == wanted),
                "{wanted} missing from {features:?}"
            );
        }
    }
}
