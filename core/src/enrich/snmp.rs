//! What an SNMP poll asks and how its answer is read: pure, so that the
//! fuzz target (`snmp_response`) runs exactly the code the pollers run.
//!
//! One GET carries sysName and, for each interface asked, ifDescr, ifName,
//! ifAlias and ifHighSpeed (IF-MIB). An interface's name is its ifName; its
//! description its ifAlias, else its ifDescr (either only when it differs
//! from the name); its speed ifHighSpeed in Mbps. An interface without an
//! ifName is not found (answered empty); the exporter keeps its sysName.

use snmp2::{Oid, Pdu, Value};

use super::metadata::InterfaceInfo;

/// sysName.0.
pub const SYS_NAME: [u64; 9] = [1, 3, 6, 1, 2, 1, 1, 5, 0];
/// ifDescr, ifName, ifAlias, ifHighSpeed: each followed by the ifIndex.
const IF_DESCR: [u64; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
const IF_NAME: [u64; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
const IF_ALIAS: [u64; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18];
const IF_HIGH_SPEED: [u64; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15];
/// Objects asked per interface.
pub const OBJECTS_PER_INTERFACE: usize = 4;
/// Longest string kept from an answer (ifAlias is at most 64 octets,
/// ifDescr and sysName 255); longer ones are cut.
const STRING_MAX: usize = 255;

/// Why a poll failed: a bounded set, the `reason` label of the poll
/// counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No answer in time (after the retries).
    Timeout,
    /// The request could not be sent (no route, refused).
    Send,
    /// SNMPv3: unknown user, wrong passphrase, unsupported protocol.
    Auth,
    /// The agent answered with an error status.
    AgentError,
    /// The agent said the answer would be too big (the request is split).
    TooBig,
    /// The answer does not parse, or answers other objects than asked.
    Malformed,
    /// The answer has no sysName.
    NoSysName,
}

impl Failure {
    pub const ALL: [Failure; 7] = [
        Failure::Timeout,
        Failure::Send,
        Failure::Auth,
        Failure::AgentError,
        Failure::TooBig,
        Failure::Malformed,
        Failure::NoSysName,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Send => "send",
            Failure::Auth => "auth",
            Failure::AgentError => "agent_error",
            Failure::TooBig => "too_big",
            Failure::Malformed => "malformed",
            Failure::NoSysName => "no_sysname",
        }
    }

    /// The failure an `snmp2` error stands for.
    pub fn of(e: &snmp2::Error) -> Failure {
        use snmp2::Error as E;
        match e {
            E::Receive => Failure::Timeout,
            E::Send => Failure::Send,
            E::AuthFailure(_) | E::AuthUpdated | E::Crypto(_) | E::CommunityMismatch => Failure::Auth,
            _ => Failure::Malformed,
        }
    }
}

/// What a poll found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    pub sys_name: String,
    /// Each interface asked, in order: None when the agent has no ifName
    /// for it.
    pub interfaces: Vec<(u32, Option<InterfaceInfo>)>,
}

/// The objects one GET asks about `if_indexes`: sysName first, then four
/// per interface.
pub fn request_oids(if_indexes: &[u32]) -> Vec<Oid<'static>> {
    let mut oids = Vec::with_capacity(1 + OBJECTS_PER_INTERFACE * if_indexes.len());
    oids.push(Oid::from(&SYS_NAME).expect("a valid OID"));
    for &i in if_indexes {
        for base in [&IF_DESCR[..], &IF_NAME, &IF_ALIAS, &IF_HIGH_SPEED] {
            let mut arcs = base.to_vec();
            arcs.push(u64::from(i));
            oids.push(Oid::from(&arcs).expect("a valid OID"));
        }
    }
    oids
}

/// One answered object: a string, a number, or nothing (noSuchObject,
/// noSuchInstance, endOfMibView, NULL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Text(String),
    Number(u64),
    Missing,
}

impl Answer {
    fn of(value: &Value) -> Answer {
        match value {
            Value::OctetString(b) => {
                let b = &b[..b.len().min(STRING_MAX)];
                // Agents pad with NULs; names are text.
                let text = String::from_utf8_lossy(b);
                Answer::Text(text.trim_end_matches('\0').trim().to_string())
            }
            Value::Integer(n) if *n >= 0 => Answer::Number(*n as u64),
            Value::Unsigned32(n) | Value::Counter32(n) => Answer::Number(u64::from(*n)),
            Value::Counter64(n) => Answer::Number(*n),
            _ => Answer::Missing,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Answer::Text(t) if !t.is_empty() => Some(t),
            _ => None,
        }
    }
}

/// Reads the answer to `request_oids(if_indexes)`: the agent must answer
/// every object asked, in order (RFC 3416 §4.2.1), else it is `Malformed`.
pub fn read_answers(pdu: &Pdu, if_indexes: &[u32]) -> Result<Vec<Answer>, Failure> {
    match pdu.error_status {
        0 => {}
        1 => return Err(Failure::TooBig),
        _ => return Err(Failure::AgentError),
    }
    let asked = request_oids(if_indexes);
    let mut answers = Vec::with_capacity(asked.len());
    for (i, (oid, value)) in pdu.varbinds.clone().enumerate() {
        if asked.get(i) != Some(&oid) {
            return Err(Failure::Malformed);
        }
        answers.push(Answer::of(&value));
    }
    if answers.len() != asked.len() {
        return Err(Failure::Malformed);
    }
    Ok(answers)
}

/// Fills what `answers` lacks from `more` (another community's answers to
/// the same objects). Whether anything is still missing.
pub fn merge(answers: &mut [Answer], more: Vec<Answer>) -> bool {
    for (a, b) in answers.iter_mut().zip(more) {
        if *a == Answer::Missing {
            *a = b;
        }
    }
    answers.contains(&Answer::Missing)
}

/// Turns the answers (sysName, then ifDescr, ifName, ifAlias, ifHighSpeed
/// per interface) into what a poll found.
pub fn interpret(answers: &[Answer], if_indexes: &[u32]) -> Result<Polled, Failure> {
    let sys_name = answers.first().and_then(Answer::text).ok_or(Failure::NoSysName)?.to_string();
    let mut interfaces = Vec::with_capacity(if_indexes.len());
    for (k, &index) in if_indexes.iter().enumerate() {
        let at = |j: usize| answers.get(1 + k * OBJECTS_PER_INTERFACE + j).unwrap_or(&Answer::Missing);
        let (descr, name, alias, speed) = (at(0), at(1), at(2), at(3));
        let Some(name) = name.text() else {
            interfaces.push((index, None));
            continue;
        };
        let description = [alias.text(), descr.text()].into_iter().flatten().find(|d| *d != name).unwrap_or("");
        let speed = match speed {
            Answer::Number(n) => (*n).min(u64::from(u32::MAX)) as u32,
            _ => 0,
        };
        let info = InterfaceInfo {
            name: name.to_string(),
            description: description.to_string(),
            speed,
            ..InterfaceInfo::default()
        };
        interfaces.push((index, Some(info)));
    }
    Ok(Polled { sys_name, interfaces })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Answer {
        Answer::Text(s.into())
    }

    #[test]
    fn name_description_and_speed_follow_the_if_mib() {
        let answers = [
            text("edge1-par"),
            // 17: alias differs from the name: the description.
            text("Juniper xe-0/0/17"),
            text("xe-0/0/17"),
            text("Transit: Cogent 1-38"),
            Answer::Number(10_000),
            // 18: no alias: ifDescr; no speed: 0.
            text("eth18"),
            text("et-18"),
            text(""),
            Answer::Missing,
            // 19: alias and descr equal to the name: no description.
            text("et-19"),
            text("et-19"),
            text("et-19"),
            Answer::Number(100_000),
            // 20: no ifName: not found.
            text("GigabitEthernet20"),
            Answer::Missing,
            text("core"),
            Answer::Number(1000),
        ];
        let polled = interpret(&answers, &[17, 18, 19, 20]).unwrap();
        assert_eq!(polled.sys_name, "edge1-par");
        let got: Vec<_> = polled
            .interfaces
            .iter()
            .map(|(i, f)| (*i, f.as_ref().map(|f| (f.name.as_str(), f.description.as_str(), f.speed))))
            .collect();
        assert_eq!(
            got,
            [
                (17, Some(("xe-0/0/17", "Transit: Cogent 1-38", 10_000))),
                (18, Some(("et-18", "eth18", 0))),
                (19, Some(("et-19", "", 100_000))),
                (20, None),
            ]
        );
        assert_eq!(interpret(&[Answer::Missing], &[]), Err(Failure::NoSysName));
        assert_eq!(interpret(&[text("")], &[]), Err(Failure::NoSysName));
    }

    #[test]
    fn a_second_community_fills_what_the_first_lacked() {
        let mut answers = vec![text("edge1"), Answer::Missing, Answer::Number(5)];
        assert!(!merge(&mut answers, vec![text("other"), text("et-1"), Answer::Missing]));
        assert_eq!(answers, [text("edge1"), text("et-1"), Answer::Number(5)]);
    }

    #[test]
    fn request_objects_are_sysname_then_four_per_interface() {
        let oids = request_oids(&[7, 4_000_000_000]);
        assert_eq!(oids.len(), 9);
        assert_eq!(oids[0].to_id_string(), "1.3.6.1.2.1.1.5.0");
        assert_eq!(oids[2].to_id_string(), "1.3.6.1.2.1.31.1.1.1.1.7");
        assert_eq!(oids[8].to_id_string(), "1.3.6.1.2.1.31.1.1.1.15.4000000000");
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        for bytes in [&b""[..], b"\x30\x03\x02\x01\x01", &[0x30, 0x82, 0xff, 0xff, 0x02]] {
            if let Ok(pdu) = Pdu::from_bytes(bytes) {
                assert!(read_answers(&pdu, &[1]).is_err());
            }
        }
    }
}
