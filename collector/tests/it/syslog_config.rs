//! An operator writes a `[syslog]` section: defaults fill what is left out, and a wrong
//! field or value is refused with an error naming it, before anything is sent.

use tidegate_collector::sinks::syslog::{Facility, SyslogConfig, SyslogSink};

fn section(text: &str) -> Result<SyslogConfig, String> {
    #[derive(serde::Deserialize)]
    struct File {
        syslog: SyslogConfig,
    }
    toml::from_str::<File>(text)
        .map(|f| f.syslog)
        .map_err(|e| e.to_string())
}

fn connect_err(text: &str) -> String {
    let cfg = section(text).unwrap();
    SyslogSink::connect(&cfg).unwrap_err().to_string()
}

#[test]
fn a_minimal_section_gets_the_documented_defaults() {
    let c = section("[syslog]\naddress = \"127.0.0.1:5514\"\nprotocol = \"udp\"\n").unwrap();
    assert_eq!(c.facility, Facility::Local4);
    assert_eq!(c.app_name, "tidegate");
    assert_eq!(c.hostname, None);
    assert!(!c.cef);
    let sink = SyslogSink::connect(&c).unwrap();
    assert_eq!(sink.header().facility, 20);
    assert!(!sink.header().hostname.is_empty());
}

#[test]
fn unknown_keys_and_values_are_refused_at_their_line() {
    let e = section("[syslog]\naddress = \"h:514\"\nprotocol = \"udp\"\ncef_mode = true\n")
        .unwrap_err();
    assert!(
        e.contains("line 4") && e.contains("unknown field `cef_mode`"),
        "{e}"
    );
    let e = section("[syslog]\naddress = \"h:514\"\nprotocol = \"tls\"\n").unwrap_err();
    assert!(
        e.contains("line 3") && e.contains("unknown variant `tls`"),
        "{e}"
    );
    let e = section("[syslog]\naddress = \"h:514\"\n").unwrap_err();
    assert!(e.contains("missing field `protocol`"), "{e}");
}

#[test]
fn invalid_values_are_refused_by_connect_naming_the_field() {
    assert_eq!(
        connect_err("[syslog]\naddress = \"127.0.0.1\"\nprotocol = \"tcp\"\n"),
        "syslog.address: \"127.0.0.1\" has no port; expected host:port"
    );
    assert_eq!(
        connect_err("[syslog]\naddress = \"127.0.0.1:99999\"\nprotocol = \"udp\"\n"),
        "syslog.address: \"127.0.0.1:99999\": port \"99999\" is not a number from 1 to 65535"
    );
    assert_eq!(
        connect_err(
            "[syslog]\naddress = \"127.0.0.1:514\"\nprotocol = \"udp\"\nhostname = \"my host\"\n"
        ),
        "syslog.hostname: \"my host\" contains ' '; only printable ASCII without spaces is allowed"
    );
}
