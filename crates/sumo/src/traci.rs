//! A TraCI client: SUMO's documented TCP control protocol, big-endian, length-prefixed.
//!
//! A message is its total length (u32, itself included) and commands; a command is its
//! length (one byte, or 0 and a u32 when longer than 255) and its id. Every command is
//! answered by a status; a get or subscribe also by a response. Many commands go in one
//! message, so a controller's phase changes and the step travel in one round trip.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

use crate::SumoError;

pub const CMD_GETVERSION: u8 = 0x00;
pub const CMD_SIMSTEP: u8 = 0x02;
pub const CMD_CLOSE: u8 = 0x7f;
pub const CMD_SET_TL_VARIABLE: u8 = 0xc2;
pub const CMD_SET_VEHICLE_VARIABLE: u8 = 0xc4;
pub const CMD_SET_ROUTE_VARIABLE: u8 = 0xc6;
pub const ADD: u8 = 0x80;
pub const ADD_FULL: u8 = 0x85;
pub const CMD_SUBSCRIBE_VEHICLE_VARIABLE: u8 = 0xd4;
pub const CMD_SUBSCRIBE_SIM_VARIABLE: u8 = 0xdb;
pub const RESPONSE_SUBSCRIBE_VEHICLE_VARIABLE: u8 = 0xe4;
pub const RESPONSE_SUBSCRIBE_SIM_VARIABLE: u8 = 0xeb;

pub const TL_RED_YELLOW_GREEN_STATE: u8 = 0x20;
pub const VAR_SPEED: u8 = 0x40;
pub const VAR_LANE_ID: u8 = 0x51;
pub const VAR_LANEPOSITION: u8 = 0x56;
pub const VAR_ROUTE_INDEX: u8 = 0x69;
pub const VAR_TIME: u8 = 0x66;
pub const VAR_DEPARTED_VEHICLES_IDS: u8 = 0x74;
pub const VAR_TELEPORT_STARTING_VEHICLES_NUMBER: u8 = 0x75;
pub const VAR_MIN_EXPECTED_VEHICLES: u8 = 0x7d;

const TYPE_UBYTE: u8 = 0x07;
const TYPE_BYTE: u8 = 0x08;
pub const TYPE_INTEGER: u8 = 0x09;
const TYPE_DOUBLE: u8 = 0x0b;
const TYPE_STRING: u8 = 0x0c;
pub const TYPE_STRINGLIST: u8 = 0x0e;
pub const TYPE_COMPOUND: u8 = 0x0f;
const POSITION_2D: u8 = 0x01;
const TYPE_COLOR: u8 = 0x11;

/// A typed value as TraCI sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i32),
    Double(f64),
    Str(String),
    List(Vec<String>),
    Byte(i16),
    Compound(Vec<Value>),
    Other,
}

impl Value {
    pub fn as_f64(&self) -> f64 {
        match self {
            Self::Double(d) => *d,
            Self::Int(i) => f64::from(*i),
            _ => f64::NAN,
        }
    }
    pub fn as_i64(&self) -> i64 {
        match self {
            Self::Int(i) => i64::from(*i),
            Self::Double(d) => *d as i64,
            _ => 0,
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Self::Str(s) => s,
            _ => "",
        }
    }
    pub fn as_list(&self) -> &[String] {
        match self {
            Self::List(l) => l,
            _ => &[],
        }
    }
}

/// One object's subscribed values after a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub response: u8,
    pub object: String,
    pub values: Vec<(u8, Value)>,
}

impl Subscription {
    pub fn get(&self, var: u8) -> Option<&Value> {
        self.values.iter().find(|(v, _)| *v == var).map(|(_, x)| x)
    }
}

/// A command being built.
#[derive(Debug, Default)]
pub struct Command {
    id: u8,
    body: Vec<u8>,
}

impl Command {
    pub fn new(id: u8) -> Self {
        Self {
            id,
            body: Vec::new(),
        }
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.body.push(v);
        self
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.body.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn f64(mut self, v: f64) -> Self {
        self.body.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn string(mut self, s: &str) -> Self {
        self.body.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.body.extend_from_slice(s.as_bytes());
        self
    }
    /// A string value with its type tag.
    pub fn typed_string(self, s: &str) -> Self {
        self.u8(TYPE_STRING).string(s)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let short = self.body.len() + 2;
        if short <= 255 {
            out.push(short as u8);
        } else {
            out.push(0);
            out.extend_from_slice(&((self.body.len() + 6) as u32).to_be_bytes());
        }
        out.push(self.id);
        out.extend_from_slice(&self.body);
    }
}

/// Sets a traffic light's state string.
pub fn set_state(tl: &str, state: &str) -> Command {
    Command::new(CMD_SET_TL_VARIABLE)
        .u8(TL_RED_YELLOW_GREEN_STATE)
        .string(tl)
        .typed_string(state)
}

/// Subscribes to an object's variables for the whole run.
pub fn subscribe(cmd: u8, object: &str, vars: &[u8]) -> Command {
    let mut c = Command::new(cmd)
        .f64(0.0)
        .f64(1e15)
        .string(object)
        .u8(vars.len() as u8);
    for v in vars {
        c = c.u8(*v);
    }
    c
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SumoError> {
        let end = self.at + n;
        let slice = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| SumoError::Protocol("message ended early".into()))?;
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, SumoError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SumoError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, SumoError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn f64(&mut self) -> Result<f64, SumoError> {
        Ok(f64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self) -> Result<String, SumoError> {
        let n = self.u32()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn value(&mut self) -> Result<Value, SumoError> {
        Ok(match self.u8()? {
            TYPE_INTEGER => Value::Int(self.i32()?),
            TYPE_DOUBLE => Value::Double(self.f64()?),
            TYPE_STRING => Value::Str(self.string()?),
            TYPE_STRINGLIST => {
                let n = self.u32()? as usize;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(self.string()?);
                }
                Value::List(l)
            }
            TYPE_UBYTE => Value::Byte(i16::from(self.u8()?)),
            TYPE_BYTE => Value::Byte(i16::from(self.u8()? as i8)),
            TYPE_COMPOUND => {
                let n = self.i32()?.max(0) as usize;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(self.value()?);
                }
                Value::Compound(l)
            }
            POSITION_2D => {
                self.take(16)?;
                Value::Other
            }
            TYPE_COLOR => {
                self.take(4)?;
                Value::Other
            }
            t => return Err(SumoError::Protocol(format!("unknown value type 0x{t:02x}"))),
        })
    }
    /// A command's length prefix; returns where it ends.
    fn length(&mut self) -> Result<usize, SumoError> {
        let start = self.at;
        let n = self.u8()? as usize;
        Ok(if n == 0 {
            start + self.u32()? as usize
        } else {
            start + n
        })
    }
}

/// A connection to a SUMO started with `--remote-port`.
pub struct Traci {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl std::fmt::Debug for Traci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Traci")
    }
}

impl Traci {
    /// Connects, retrying while SUMO starts up.
    pub fn connect(port: u16, wait: std::time::Duration) -> Result<Self, SumoError> {
        let started = std::time::Instant::now();
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if started.elapsed() > wait => {
                    return Err(SumoError::Connect(format!("127.0.0.1:{port}: {e}")));
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        };
        stream.set_nodelay(true).map_err(SumoError::Io)?;
        // A SUMO that stops answering is an error, not a hang.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(300)))
            .map_err(SumoError::Io)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone().map_err(SumoError::Io)?),
            writer: BufWriter::new(stream),
        })
    }

    /// Sends commands in one message; returns the subscription results that came back
    /// (with a step: every subscribed object's values).
    pub fn send(&mut self, commands: &[Command]) -> Result<Vec<Subscription>, SumoError> {
        let mut body = Vec::new();
        for c in commands {
            c.encode(&mut body);
        }
        self.writer
            .write_all(&((body.len() + 4) as u32).to_be_bytes())
            .and_then(|_| self.writer.write_all(&body))
            .and_then(|_| self.writer.flush())
            .map_err(SumoError::Io)?;
        let mut len = [0u8; 4];
        self.reader.read_exact(&mut len).map_err(SumoError::Io)?;
        let mut buf = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        self.reader.read_exact(&mut buf).map_err(SumoError::Io)?;
        let mut r = Reader { buf: &buf, at: 0 };
        let mut subs = Vec::new();
        for c in commands {
            // The status.
            let end = r.length()?;
            let id = r.u8()?;
            let result = r.u8()?;
            let description = r.string()?;
            r.at = end;
            if result != 0 {
                return Err(SumoError::Refused {
                    command: id,
                    message: description,
                });
            }
            if id != c.id {
                return Err(SumoError::Protocol(format!(
                    "status for 0x{id:02x}, expected 0x{:02x}",
                    c.id
                )));
            }
            match c.id {
                CMD_SIMSTEP => {
                    let n = r.u32()?;
                    for _ in 0..n {
                        subs.push(read_subscription(&mut r)?);
                    }
                }
                CMD_GETVERSION => {
                    let end = r.length()?;
                    r.at = end;
                }
                id if (0xd0..=0xdf).contains(&id) => subs.push(read_subscription(&mut r)?),
                _ => {}
            }
        }
        Ok(subs)
    }

    /// Advances one step (the step length SUMO was started with).
    pub fn step(&mut self, mut commands: Vec<Command>) -> Result<Vec<Subscription>, SumoError> {
        commands.push(Command::new(CMD_SIMSTEP).f64(0.0));
        self.send(&commands)
    }

    pub fn close(mut self) -> Result<(), SumoError> {
        self.send(&[Command::new(CMD_CLOSE)]).map(|_| ())
    }
}

fn read_subscription(r: &mut Reader<'_>) -> Result<Subscription, SumoError> {
    let end = r.length()?;
    let response = r.u8()?;
    let object = r.string()?;
    let n = r.u8()?;
    let mut values = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let var = r.u8()?;
        let status = r.u8()?;
        let value = r.value()?;
        if status == 0 {
            values.push((var, value));
        }
    }
    r.at = end;
    Ok(Subscription {
        response,
        object,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_short_and_long_lengths() {
        let mut out = Vec::new();
        set_state("tl", "GGr").encode(&mut out);
        // len, id, var, "tl", type, "GGr"
        assert_eq!(out[0] as usize, out.len());
        assert_eq!(
            &out[1..3],
            &[CMD_SET_TL_VARIABLE, TL_RED_YELLOW_GREEN_STATE]
        );
        let long = "G".repeat(300);
        let mut out = Vec::new();
        set_state("tl", &long).encode(&mut out);
        assert_eq!(out[0], 0);
        assert_eq!(
            u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(out[5], CMD_SET_TL_VARIABLE);
    }

    #[test]
    fn a_subscription_result_reads_back() {
        // len 0 + u32, response, object "v1", 2 vars: lane id (string), speed (double).
        let mut body = vec![RESPONSE_SUBSCRIBE_VEHICLE_VARIABLE];
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(b"v1");
        body.push(2);
        body.extend_from_slice(&[VAR_LANE_ID, 0, TYPE_STRING]);
        body.extend_from_slice(&3u32.to_be_bytes());
        body.extend_from_slice(b"a_0");
        body.extend_from_slice(&[VAR_SPEED, 0, TYPE_DOUBLE]);
        body.extend_from_slice(&7.5f64.to_be_bytes());
        let mut msg = vec![(body.len() + 1) as u8];
        msg.extend_from_slice(&body);
        let mut r = Reader { buf: &msg, at: 0 };
        let s = read_subscription(&mut r).unwrap();
        assert_eq!(s.object, "v1");
        assert_eq!(s.get(VAR_LANE_ID).unwrap().as_str(), "a_0");
        assert_eq!(s.get(VAR_SPEED).unwrap().as_f64(), 7.5);
        assert_eq!(r.at, msg.len());
    }
}
