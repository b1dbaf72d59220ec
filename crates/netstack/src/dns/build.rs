//! Writing messages, names compressed (RFC 1035 §4.1.4) so a rewritten reply is no longer
//! than the one it came from.

use super::message::{Header, Query, Question, RData, Record};
use super::name::Name;
use super::{
    CLASS_IN, EDNS_UDP_SIZE, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, TYPE_A, TYPE_OPT,
};
use std::net::Ipv4Addr;

/// Compression pointers can only reach the first 16 KiB of a message.
const MAX_POINTER_TARGET: usize = 0x3fff;
/// The most name suffixes remembered for compression: bounds the search per name.
const MAX_SUFFIXES: usize = 256;

/// A message being written.
#[derive(Debug, Default)]
pub struct Builder {
    buf: Vec<u8>,
    /// (offset, uncompressed wire form of the suffix written there).
    suffixes: Vec<(u16, Vec<u8>)>,
}

impl Builder {
    /// Starts a message with this header (counts as given: the caller writes what it counts).
    pub fn new(header: Header) -> Builder {
        let mut b = Builder {
            buf: Vec::with_capacity(512),
            suffixes: Vec::new(),
        };
        for w in [
            header.id,
            header.flags,
            header.questions,
            header.answers,
            header.authority,
            header.additional,
        ] {
            b.u16(w);
        }
        b
    }

    /// Appends a question.
    pub fn question(&mut self, q: &Question) -> &mut Builder {
        self.name(&q.name);
        self.u16(q.qtype);
        self.u16(q.qclass);
        self
    }

    /// Appends a record.
    pub fn record(&mut self, r: &Record) -> &mut Builder {
        self.name(&r.name);
        self.u16(r.rtype);
        self.u16(r.class);
        self.buf.extend_from_slice(&r.ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.u16(0);
        match &r.data {
            RData::A(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Names { head, names, tail } => {
                self.buf.extend_from_slice(head);
                for n in names {
                    self.name(n);
                }
                self.buf.extend_from_slice(tail);
            }
            RData::Raw(raw) => self.buf.extend_from_slice(raw),
        }
        let len = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// Appends an EDNS OPT record advertising `udp_size`.
    pub fn opt(&mut self, udp_size: u16) -> &mut Builder {
        self.buf.push(0);
        self.u16(TYPE_OPT);
        self.u16(udp_size);
        self.buf.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self
    }

    /// The finished message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn u16(&mut self, w: u16) {
        self.buf.extend_from_slice(&w.to_be_bytes());
    }

    fn name(&mut self, name: &Name) {
        let wire = name.wire();
        let mut at = 0;
        while wire.get(at).is_some_and(|&len| len != 0) {
            let suffix = &wire[at..];
            if let Some((offset, _)) = self.suffixes.iter().find(|(_, s)| s == suffix) {
                let pointer = 0xc000 | *offset;
                self.u16(pointer);
                return;
            }
            let here = self.buf.len();
            if here <= MAX_POINTER_TARGET && self.suffixes.len() < MAX_SUFFIXES {
                self.suffixes.push((here as u16, suffix.to_vec()));
            }
            let len = wire[at] as usize;
            self.buf.extend_from_slice(&wire[at..at + 1 + len]);
            at += 1 + len;
        }
        self.buf.push(0);
    }
}

/// The response flags for an answer the stack gives itself: the guest's RD and CD echoed.
fn local_flags(query: &Header, rcode: u8, authoritative: bool) -> u16 {
    let aa = if authoritative { FLAG_AA } else { 0 };
    FLAG_QR | FLAG_RA | aa | (query.flags & (FLAG_RD | FLAG_CD)) | u16::from(rcode)
}

/// An answer with no records and this response code (NXDOMAIN, NODATA, NOTIMP…), echoing
/// the question.
pub fn empty_answer(query: &Query, rcode: u8, authoritative: bool) -> Vec<u8> {
    let header = Header {
        id: query.header.id,
        flags: local_flags(&query.header, rcode, authoritative),
        questions: 1,
        answers: 0,
        authority: 0,
        additional: 0,
    };
    let mut b = Builder::new(header);
    b.question(&query.question);
    b.finish()
}

/// An error answer to a message whose header is all that could be read (FORMERR, NOTIMP).
pub fn header_error(query: &Header, rcode: u8) -> Vec<u8> {
    let header = Header {
        id: query.id,
        flags: local_flags(query, rcode, false) | (query.flags & 0x7800),
        questions: 0,
        answers: 0,
        authority: 0,
        additional: 0,
    };
    Builder::new(header).finish()
}

/// An authoritative answer with one A record for the question's name.
pub fn a_answer(query: &Query, addr: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let header = Header {
        id: query.header.id,
        flags: local_flags(&query.header, super::RCODE_NOERROR, true),
        questions: 1,
        answers: 1,
        authority: 0,
        additional: 0,
    };
    let record = Record {
        name: query.question.name.clone(),
        rtype: TYPE_A,
        class: CLASS_IN,
        ttl,
        data: RData::A(addr),
    };
    let mut b = Builder::new(header);
    b.question(&query.question).record(&record);
    b.finish()
}

/// The guest's query re-encoded for upstream: its id, RD and CD, its question, and an OPT
/// record if the guest spoke EDNS; nothing else the guest wrote leaves the box.
pub fn forward(query: &Query) -> Vec<u8> {
    let header = Header {
        id: query.header.id,
        flags: query.header.flags & (FLAG_RD | FLAG_CD),
        questions: 1,
        answers: 0,
        authority: 0,
        additional: u16::from(query.edns.is_some()),
    };
    let mut b = Builder::new(header);
    b.question(&query.question);
    if let Some(size) = query.edns {
        // Never ask for more than the guest can take, nor more than avoids fragmentation.
        b.opt(size.clamp(512, EDNS_UDP_SIZE));
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::Reply;
    use crate::dns::{Header, TYPE_CNAME};

    fn name(text: &str) -> Name {
        Name::from_text(text).unwrap()
    }

    #[test]
    fn compresses_repeated_suffixes() {
        let header = Header {
            id: 7,
            flags: FLAG_QR,
            questions: 1,
            answers: 2,
            authority: 0,
            additional: 0,
        };
        let q = Question {
            name: name("www.example.com"),
            qtype: TYPE_A,
            qclass: CLASS_IN,
        };
        let cname = Record {
            name: name("www.example.com"),
            rtype: TYPE_CNAME,
            class: CLASS_IN,
            ttl: 60,
            data: RData::Names {
                head: vec![],
                names: vec![name("example.com")],
                tail: vec![],
            },
        };
        let a = Record {
            name: name("example.com"),
            rtype: TYPE_A,
            class: CLASS_IN,
            ttl: 60,
            data: RData::A(Ipv4Addr::new(198, 51, 100, 7)),
        };
        let mut b = Builder::new(header);
        b.question(&q).record(&cname).record(&a);
        let msg = b.finish();
        // Question 17+4, CNAME 2+10+2, A 2+10+4.
        assert_eq!(msg.len(), 12 + 21 + 14 + 16);
        let reply = Reply::read(&msg).unwrap();
        assert_eq!(reply.question, q);
        assert_eq!(reply.answers, vec![cname, a]);
    }
}
