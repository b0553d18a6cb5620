//! pcap/pcapng replay.
