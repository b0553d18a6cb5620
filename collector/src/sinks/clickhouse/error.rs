//! Errors of the ClickHouse sink, and which of them a retry can cure.

use std::time::Duration;

/// What a failed sink operation means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// ClickHouse is unreachable, slow, overloaded or restarting: keep the batch and retry
    /// the same call later (the deduplication token makes the retry safe).
    Transient,
    /// Configuration or schema: every insert fails the same way until an operator acts
    /// (wrong credentials, missing table, changed migration, invalid config).
    Config,
    /// This batch can never be stored as it is (a record out of range, data the server
    /// cannot parse); other batches are unaffected.
    Data,
}

/// What can go wrong in the ClickHouse sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A configuration field is invalid.
    #[error("clickhouse.{field}: {reason}")]
    Config {
        /// Field name inside `[clickhouse]`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached, or the connection broke (refused, reset, DNS).
    #[error("ClickHouse at {url} unreachable during {op}: {source}")]
    Unreachable {
        /// Server URL.
        url: String,
        /// Operation, e.g. `insert into flows (token edge-1:42)`.
        op: String,
        /// Client error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// The operation did not finish within its deadline.
    #[error("ClickHouse at {url}: {op} timed out after {after:?}")]
    Timeout {
        /// Server URL.
        url: String,
        /// Operation.
        op: String,
        /// Deadline that expired.
        after: Duration,
    },
    /// The server answered with an error.
    #[error("ClickHouse rejected {op}: {message}")]
    Server {
        /// Operation.
        op: String,
        /// ClickHouse error code (`Code: N` in the message), when there is one.
        code: Option<u32>,
        /// The server's message (or HTTP status when the body was empty).
        message: String,
    },
    /// The client failed before or after talking to the server (serialisation, a row type
    /// that does not match the table, an unreadable response).
    #[error("ClickHouse client error during {op}: {source}")]
    Client {
        /// Operation.
        op: String,
        /// Client error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// A record or health report cannot be stored as it is.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which item, e.g. `record 17 of batch edge-1:42`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A migration that was already applied differs from the one in this build.
    #[error(
        "migration {version:04}_{name} in database {database} was applied with checksum \
         {applied} but this build's file has {embedded}: applied migrations must never be \
         edited; restore the file and add a new migration"
    )]
    MigrationChanged {
        /// Database.
        database: String,
        /// Migration number.
        version: u32,
        /// Migration name.
        name: String,
        /// SHA-256 recorded in `schema_migrations` (several if different collectors disagreed).
        applied: String,
        /// SHA-256 of the embedded file.
        embedded: String,
    },
    /// The database has a migration this build does not know (a newer collector applied it).
    #[error(
        "database {database} has migration {version:04}_{name}, which this build does not \
         know: a newer collector applied it; run that version"
    )]
    MigrationUnknown {
        /// Database.
        database: String,
        /// Migration number.
        version: u32,
        /// Migration name recorded in the database.
        name: String,
    },
    /// The database does not look like the applied migrations left it.
    #[error("database {database}: {detail}")]
    SchemaDrift {
        /// Database.
        database: String,
        /// What is wrong, e.g. a table dropped by hand.
        detail: String,
    },
    /// A statement of a migration failed.
    #[error("migration {file}, statement {statement}: {source}")]
    Migration {
        /// Migration file name.
        file: &'static str,
        /// 1-based statement number in the file.
        statement: usize,
        /// Why.
        #[source]
        source: Box<SinkError>,
    },
}

impl SinkError {
    /// True when the same call may succeed later (ClickHouse unreachable, timed out,
    /// overloaded, restarting); false for configuration, schema and data errors.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// What the error means for the caller; see [`ErrorClass`].
    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Unreachable { .. } | SinkError::Timeout { .. } => ErrorClass::Transient,
            SinkError::Server { code, message, .. } => server_class(*code, message),
            SinkError::Client { source, .. } => client_class(source),
            SinkError::Invalid { .. } => ErrorClass::Data,
            SinkError::Config { .. }
            | SinkError::MigrationChanged { .. }
            | SinkError::MigrationUnknown { .. }
            | SinkError::SchemaDrift { .. } => ErrorClass::Config,
            SinkError::Migration { source, .. } => match source.class() {
                // A migration never carries flow data: a rejected statement is a schema problem.
                ErrorClass::Data => ErrorClass::Config,
                c => c,
            },
        }
    }

    /// Maps a `clickhouse` crate error of operation `op` against `url`, whose deadline was
    /// `timeout`.
    pub(crate) fn from_client(
        url: &str,
        timeout: Duration,
        op: impl Into<String>,
        e: clickhouse::error::Error,
    ) -> Self {
        use clickhouse::error::Error as E;
        let op = op.into();
        match e {
            E::Network(_) => SinkError::Unreachable {
                url: url.to_string(),
                op,
                source: e,
            },
            E::TimedOut => SinkError::Timeout {
                url: url.to_string(),
                op,
                after: timeout,
            },
            E::BadResponse(message) => SinkError::Server {
                op,
                code: server_code(&message),
                message,
            },
            other => SinkError::Client { op, source: other },
        }
    }
}

/// The `N` of `Code: N` in a ClickHouse error message.
fn server_code(message: &str) -> Option<u32> {
    let at = message.find("Code: ")? + "Code: ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// An HTTP status at the start of a message without a ClickHouse code (`503 Service
/// Unavailable`: the crate's text when the body was empty, e.g. from a proxy).
fn http_status(message: &str) -> Option<u16> {
    let (status, _) = message.split_once(' ').unwrap_or((message, ""));
    (status.len() == 3).then(|| status.parse().ok()).flatten()
}

/// ClickHouse error codes (`SELECT errorCodeToName(N)`) that a retry can cure.
const TRANSIENT_CODES: &[u32] = &[
    3,    // UNEXPECTED_END_OF_FILE (request body cut off in transit)
    23,   // CANNOT_READ_FROM_ISTREAM
    24,   // CANNOT_WRITE_TO_OSTREAM
    32,   // ATTEMPT_TO_READ_AFTER_EOF
    74,   // CANNOT_READ_FROM_FILE_DESCRIPTOR
    75,   // CANNOT_WRITE_TO_FILE_DESCRIPTOR
    159,  // TIMEOUT_EXCEEDED
    160,  // TOO_SLOW
    173,  // CANNOT_ALLOCATE_MEMORY
    198,  // DNS_ERROR
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    203,  // NO_FREE_CONNECTION
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    225,  // NO_ZOOKEEPER
    236,  // ABORTED
    241,  // MEMORY_LIMIT_EXCEEDED
    242,  // TABLE_IS_READ_ONLY
    243,  // NOT_ENOUGH_SPACE
    244,  // UNEXPECTED_ZOOKEEPER_ERROR
    252,  // TOO_MANY_PARTS (merges falling behind: back off)
    271,  // CANNOT_DECOMPRESS (body corrupted in transit)
    274,  // AIO_READ_ERROR
    279,  // ALL_CONNECTION_TRIES_FAILED
    285,  // TOO_FEW_LIVE_REPLICAS
    319,  // UNKNOWN_STATUS_OF_INSERT
    373,  // SESSION_IS_LOCKED
    394,  // QUERY_WAS_CANCELLED (server shutting down)
    415,  // ALL_REPLICAS_LOST
    416,  // REPLICA_STATUS_CHANGED
    425,  // SYSTEM_ERROR
    439,  // CANNOT_SCHEDULE_TASK
    473,  // DEADLOCK_AVOIDED
    999,  // KEEPER_EXCEPTION
    1000, // POCO_EXCEPTION (socket errors)
];

/// Codes that mean the configuration or the schema is wrong.
const CONFIG_CODES: &[u32] = &[
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    48,  // NOT_IMPLEMENTED
    50,  // UNKNOWN_TYPE
    57,  // TABLE_ALREADY_EXISTS
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    81,  // UNKNOWN_DATABASE
    115, // UNKNOWN_SETTING
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    215, // NOT_AN_AGGREGATE
    291, // DATABASE_ACCESS_DENIED
    472, // READONLY_SETTING
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// Codes that mean the data sent cannot be stored (for RowBinary from this sink: a row
/// type that does not match the table, or values the column types refuse).
const DATA_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    246, // CORRUPTED_DATA
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    386, // NO_COMMON_TYPE
];

/// Classifies a server error. Unknown codes count as transient: the batch stays in the
/// collector's spool and is retried rather than dropped, and the failure stays visible in
/// the logs and metrics until someone looks.
fn server_class(code: Option<u32>, message: &str) -> ErrorClass {
    match code {
        Some(c) if CONFIG_CODES.contains(&c) => ErrorClass::Config,
        Some(c) if DATA_CODES.contains(&c) => ErrorClass::Data,
        Some(c) if TRANSIENT_CODES.contains(&c) => ErrorClass::Transient,
        Some(_) => ErrorClass::Transient,
        None => match http_status(message) {
            Some(401 | 403 | 404) => ErrorClass::Config,
            Some(408 | 425 | 429) | Some(500..=599) => ErrorClass::Transient,
            Some(400..=499) => ErrorClass::Data,
            _ => ErrorClass::Transient,
        },
    }
}

fn client_class(e: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut | E::Compression(_) | E::Decompression(_) | E::Other(_) => {
            ErrorClass::Transient
        }
        E::BadResponse(m) => server_class(server_code(m), m),
        E::InvalidParams(_)
        | E::Unsupported(_)
        | E::SchemaMismatch(_)
        | E::InvalidColumnsHeader(_) => ErrorClass::Config,
        // Serialisation of a row, or a row that does not fit the table's types.
        _ => ErrorClass::Data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(msg: &str) -> SinkError {
        SinkError::from_client(
            "http://x",
            Duration::from_secs(1),
            "test",
            clickhouse::error::Error::BadResponse(msg.to_string()),
        )
    }

    #[test]
    fn codes_are_parsed_from_messages() {
        assert_eq!(
            server_code("Code: 252. DB::Exception: Too many parts (300)."),
            Some(252)
        );
        assert_eq!(server_code("Code: 60"), Some(60));
        assert_eq!(server_code("503 Service Unavailable"), None);
    }

    #[test]
    fn overload_and_network_are_retryable() {
        for m in [
            "Code: 252. DB::Exception: Too many parts (3001) in table 'tidegate.flows'. (TOO_MANY_PARTS)",
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)",
            "Code: 394. DB::Exception: Query was cancelled. (QUERY_WAS_CANCELLED)",
            "Code: 4242. DB::Exception: something new",
            "503 Service Unavailable",
            "502 Bad Gateway",
            "429 Too Many Requests",
        ] {
            assert!(server(m).is_retryable(), "{m}");
        }
        let timeout = SinkError::from_client(
            "http://x",
            Duration::from_secs(1),
            "t",
            clickhouse::error::Error::TimedOut,
        );
        assert!(timeout.is_retryable());
    }

    #[test]
    fn schema_type_and_auth_errors_are_not() {
        for (m, class) in [
            (
                "Code: 60. DB::Exception: Unknown table expression identifier 'tidegate.flows'. (UNKNOWN_TABLE)",
                ErrorClass::Config,
            ),
            (
                "Code: 81. DB::Exception: Database tidegate does not exist. (UNKNOWN_DATABASE)",
                ErrorClass::Config,
            ),
            (
                "Code: 516. DB::Exception: default: Authentication failed. (AUTHENTICATION_FAILED)",
                ErrorClass::Config,
            ),
            (
                "Code: 16. DB::Exception: No such column vlan in table. (NO_SUCH_COLUMN_IN_TABLE)",
                ErrorClass::Config,
            ),
            (
                "Code: 53. DB::Exception: Type mismatch. (TYPE_MISMATCH)",
                ErrorClass::Data,
            ),
            (
                "Code: 33. DB::Exception: Cannot read all data. (CANNOT_READ_ALL_DATA)",
                ErrorClass::Data,
            ),
            ("404 Not Found", ErrorClass::Config),
            ("400 Bad Request", ErrorClass::Data),
        ] {
            let e = server(m);
            assert!(!e.is_retryable(), "{m}");
            assert_eq!(e.class(), class, "{m}");
        }
        let schema = SinkError::from_client(
            "http://x",
            Duration::from_secs(1),
            "t",
            clickhouse::error::Error::SchemaMismatch("column vlan".into()),
        );
        assert_eq!(schema.class(), ErrorClass::Config);
        let ser = SinkError::from_client(
            "http://x",
            Duration::from_secs(1),
            "t",
            clickhouse::error::Error::Custom("x".into()),
        );
        assert_eq!(ser.class(), ErrorClass::Data);
    }

    #[test]
    fn migration_errors_delegate_but_never_blame_data() {
        let wrap = |e| SinkError::Migration {
            file: "0001_flows.sql",
            statement: 1,
            source: Box::new(e),
        };
        assert!(wrap(server("503 Service Unavailable")).is_retryable());
        assert_eq!(
            wrap(server("Code: 53. DB::Exception: Type mismatch")).class(),
            ErrorClass::Config
        );
        let msg = wrap(server("Code: 62. DB::Exception: Syntax error")).to_string();
        assert!(
            msg.starts_with("migration 0001_flows.sql, statement 1: ClickHouse rejected"),
            "{msg}"
        );
    }
}
