//! DNS messages (RFC 1035): just enough to read a guest's query and an upstream reply, and to
//! write the answers the policy gives. Every size the guest or upstream controls is capped.

pub mod build;
pub mod message;
pub mod name;

pub use build::Builder;
pub use message::{Header, Query, Question, RData, Record, Reply};
pub use name::Name;

/// The longest message read: we advertise [`EDNS_UDP_SIZE`] upstream and plain UDP DNS is
/// 512 bytes, so anything longer is not a reply to us; the cap bounds the parse.
pub const MAX_MESSAGE: usize = 4096;
/// The longest name on the wire (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// The most compression pointers followed in one name: pointers only go backwards, so this
/// bounds a chain of pointers to pointers that loops cannot make.
pub const MAX_POINTER_HOPS: usize = 32;
/// The most records read from a reply's answer section: a real answer holds a CNAME chain and
/// a few addresses; this bounds the pins and the work one reply can cause.
pub const MAX_ANSWERS: usize = 64;
/// The most records a query may carry outside its question (an OPT record, maybe a cookie):
/// a query has no business carrying more.
pub const MAX_QUERY_RECORDS: usize = 4;
/// The UDP payload size advertised upstream when the guest uses EDNS: the DNS flag day 2020
/// value, which avoids IP fragmentation.
pub const EDNS_UDP_SIZE: u16 = 1232;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type NS.
pub const TYPE_NS: u16 = 2;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type MX.
pub const TYPE_MX: u16 = 15;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type SRV.
pub const TYPE_SRV: u16 = 33;
/// Record type OPT (EDNS, RFC 6891).
pub const TYPE_OPT: u16 = 41;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response code: no error.
pub const RCODE_NOERROR: u8 = 0;
/// Response code: the query was malformed.
pub const RCODE_FORMERR: u8 = 1;
/// Response code: the server failed.
pub const RCODE_SERVFAIL: u8 = 2;
/// Response code: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Response code: the opcode is not implemented.
pub const RCODE_NOTIMP: u8 = 4;

/// Flag: a response.
pub const FLAG_QR: u16 = 0x8000;
/// Flag: an authoritative answer.
pub const FLAG_AA: u16 = 0x0400;
/// Flag: truncated.
pub const FLAG_TC: u16 = 0x0200;
/// Flag: recursion desired.
pub const FLAG_RD: u16 = 0x0100;
/// Flag: recursion available.
pub const FLAG_RA: u16 = 0x0080;
/// Flag: checking disabled (DNSSEC).
pub const FLAG_CD: u16 = 0x0010;

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The message ends inside a field.
    #[error("message truncated")]
    Truncated,
    /// The message is longer than [`MAX_MESSAGE`].
    #[error("message longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// A name is longer than [`MAX_NAME_LEN`].
    #[error("name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// A compression pointer points forwards, at itself, or too many hops deep.
    #[error("bad compression pointer")]
    BadPointer,
    /// A label length uses the reserved 0x40/0x80 prefixes.
    #[error("bad label type")]
    BadLabel,
    /// A query arrived where a reply was due, or the reverse.
    #[error("wrong direction (QR bit)")]
    Direction,
    /// Not exactly one question.
    #[error("not exactly one question")]
    Questions,
    /// More records than the caps allow.
    #[error("too many records")]
    TooManyRecords,
    /// Record data does not fit its type.
    #[error("bad record data")]
    BadData,
}
