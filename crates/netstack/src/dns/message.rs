//! Reading messages: the header, the one question, and the records the policy needs.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::name::Name;
use super::{
    DnsError, FLAG_QR, MAX_ANSWERS, MAX_MESSAGE, MAX_QUERY_RECORDS, TYPE_A, TYPE_AAAA, TYPE_CNAME,
    TYPE_MX, TYPE_NS, TYPE_OPT, TYPE_PTR, TYPE_SOA, TYPE_SRV,
};

/// The fixed 12-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The transaction id.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, AD, CD and rcode.
    pub flags: u16,
    /// Question count.
    pub questions: u16,
    /// Answer count.
    pub answers: u16,
    /// Authority count.
    pub authority: u16,
    /// Additional count.
    pub additional: u16,
}

impl Header {
    /// The header's size.
    pub const LEN: usize = 12;

    /// Reads the header of `msg`, refusing messages over [`MAX_MESSAGE`].
    pub fn read(msg: &[u8]) -> Result<Header, DnsError> {
        if msg.len() > MAX_MESSAGE {
            return Err(DnsError::TooLong);
        }
        let word = |i: usize| Ok(u16::from_be_bytes([byte(msg, i)?, byte(msg, i + 1)?]));
        Ok(Header {
            id: word(0)?,
            flags: word(2)?,
            questions: word(4)?,
            answers: word(6)?,
            authority: word(8)?,
            additional: word(10)?,
        })
    }

    /// The opcode (0 is a standard query).
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    /// The response code.
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
}

/// A question: a name, a type and a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: Name,
    /// The record type asked for.
    pub qtype: u16,
    /// The class (IN).
    pub qclass: u16,
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name.
    pub name: Name,
    /// The type.
    pub rtype: u16,
    /// The class.
    pub class: u16,
    /// Seconds a resolver may cache it.
    pub ttl: u32,
    /// The data, with embedded names decompressed.
    pub data: RData,
}

/// Record data: what the policy reads, and embedded names taken out of the message's
/// compression so the record can be written into a new message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// Fixed bytes, names, fixed bytes (CNAME, NS, PTR, MX, SRV, SOA).
    Names {
        /// Bytes before the names (MX preference, SRV priority/weight/port).
        head: Vec<u8>,
        /// The embedded names.
        names: Vec<Name>,
        /// Bytes after the names (SOA's five counters).
        tail: Vec<u8>,
    },
    /// Opaque bytes (no compressed names by RFC 3597).
    Raw(Vec<u8>),
}

/// A guest's query: what the policy decides on and what it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The header as received.
    pub header: Header,
    /// The one question.
    pub question: Question,
    /// The UDP size from the guest's EDNS OPT record, if it sent one.
    pub edns: Option<u16>,
}

/// An upstream reply: the question and the answer section (authority and additional
/// sections are not read: the guest gets answers only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The header as received.
    pub header: Header,
    /// The one question.
    pub question: Question,
    /// The answer section.
    pub answers: Vec<Record>,
}

impl Query {
    /// Reads a query; the header must be readable and say "query" before anything else is.
    pub fn read(msg: &[u8]) -> Result<Query, DnsError> {
        let header = Header::read(msg)?;
        if header.is_response() {
            return Err(DnsError::Direction);
        }
        if header.questions != 1 {
            return Err(DnsError::Questions);
        }
        let others = header.answers as usize + header.authority as usize;
        if others + header.additional as usize > MAX_QUERY_RECORDS {
            return Err(DnsError::TooManyRecords);
        }
        let (question, mut at) = read_question(msg, Header::LEN)?;
        let mut edns = None;
        for i in 0..others + header.additional as usize {
            let (record, next) = read_record(msg, at)?;
            at = next;
            if i >= others && record.rtype == TYPE_OPT {
                edns = Some(record.class);
            }
        }
        Ok(Query {
            header,
            question,
            edns,
        })
    }
}

impl Reply {
    /// Reads a reply's header, question and answers.
    pub fn read(msg: &[u8]) -> Result<Reply, DnsError> {
        let header = Header::read(msg)?;
        if !header.is_response() {
            return Err(DnsError::Direction);
        }
        if header.questions != 1 {
            return Err(DnsError::Questions);
        }
        if header.answers as usize > MAX_ANSWERS {
            return Err(DnsError::TooManyRecords);
        }
        let (question, mut at) = read_question(msg, Header::LEN)?;
        let mut answers = Vec::with_capacity(header.answers as usize);
        for _ in 0..header.answers {
            let (record, next) = read_record(msg, at)?;
            answers.push(record);
            at = next;
        }
        Ok(Reply {
            header,
            question,
            answers,
        })
    }
}

fn byte(msg: &[u8], at: usize) -> Result<u8, DnsError> {
    msg.get(at).copied().ok_or(DnsError::Truncated)
}

fn word(msg: &[u8], at: usize) -> Result<u16, DnsError> {
    Ok(u16::from_be_bytes([byte(msg, at)?, byte(msg, at + 1)?]))
}

fn read_question(msg: &[u8], at: usize) -> Result<(Question, usize), DnsError> {
    let (name, at) = Name::read(msg, at)?;
    let question = Question {
        name,
        qtype: word(msg, at)?,
        qclass: word(msg, at + 2)?,
    };
    Ok((question, at + 4))
}

fn read_record(msg: &[u8], at: usize) -> Result<(Record, usize), DnsError> {
    let (name, at) = Name::read(msg, at)?;
    let rtype = word(msg, at)?;
    let class = word(msg, at + 2)?;
    let ttl = u32::from(word(msg, at + 4)?) << 16 | u32::from(word(msg, at + 6)?);
    let len = word(msg, at + 8)? as usize;
    let start = at + 10;
    let end = start + len;
    let raw = msg.get(start..end).ok_or(DnsError::Truncated)?;
    let data = match rtype {
        TYPE_A => RData::A(
            <[u8; 4]>::try_from(raw)
                .map_err(|_| DnsError::BadData)?
                .into(),
        ),
        TYPE_AAAA => RData::Aaaa(
            <[u8; 16]>::try_from(raw)
                .map_err(|_| DnsError::BadData)?
                .into(),
        ),
        TYPE_CNAME | TYPE_NS | TYPE_PTR => read_names(msg, start, end, 0, 1, 0)?,
        TYPE_MX => read_names(msg, start, end, 2, 1, 0)?,
        TYPE_SRV => read_names(msg, start, end, 6, 1, 0)?,
        TYPE_SOA => read_names(msg, start, end, 0, 2, 20)?,
        _ => RData::Raw(raw.to_vec()),
    };
    Ok((
        Record {
            name,
            rtype,
            class,
            ttl,
            data,
        },
        end,
    ))
}

/// Reads record data laid out as `head` fixed bytes, `count` names, `tail` fixed bytes, which
/// must fill the data exactly.
fn read_names(
    msg: &[u8],
    start: usize,
    end: usize,
    head: usize,
    count: usize,
    tail: usize,
) -> Result<RData, DnsError> {
    let head_bytes = msg
        .get(start..start + head)
        .ok_or(DnsError::BadData)?
        .to_vec();
    let mut at = start + head;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        // The name must lie inside the data, though a pointer may reach before it.
        let (name, next) = Name::read(&msg[..end], at).map_err(|e| match e {
            DnsError::Truncated => DnsError::BadData,
            e => e,
        })?;
        names.push(name);
        at = next;
    }
    if at + tail != end {
        return Err(DnsError::BadData);
    }
    let tail_bytes = msg[at..end].to_vec();
    Ok(RData::Names {
        head: head_bytes,
        names,
        tail: tail_bytes,
    })
}
